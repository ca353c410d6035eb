import uuid
from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel, UniqueConstraint

from app.models.base import created_at_field, enum_field, uuid_pk


class Town(SQLModel, table=True):
    id: uuid.UUID = uuid_pk()
    name: str = Field(max_length=100, unique=True)
    district: str = Field(default="", max_length=100)
    created_at: datetime = created_at_field()


class Village(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("town_id", "name"),)

    id: uuid.UUID = uuid_pk()
    town_id: uuid.UUID = Field(foreign_key="town.id", index=True)
    name: str = Field(max_length=100)
    created_at: datetime = created_at_field()


class VillageGroupKind(StrEnum):
    GROUP = "group"  # 村小组
    AREA = "area"  # 片区
    CENTRAL_VILLAGE = "central_village"  # 中心村 (华新)


class VillageGroup(SQLModel, table=True):
    __tablename__ = "village_group"
    __table_args__ = (UniqueConstraint("village_id", "name"),)

    id: uuid.UUID = uuid_pk()
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    name: str = Field(max_length=100)
    kind: VillageGroupKind = enum_field(VillageGroupKind, "village_group_kind")
    created_at: datetime = created_at_field()
