import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, enum_field, timestamp_field, uuid_pk


class Person(SQLModel, table=True):
    id: uuid.UUID = uuid_pk()
    name: str = Field(max_length=50)
    phone: str | None = Field(default=None, max_length=20, index=True)
    # The village that registered the person; tenant key and the scope of phone visibility.
    village_id: uuid.UUID | None = Field(default=None, foreign_key="village.id", index=True)
    username: str | None = Field(default=None, max_length=64, unique=True)
    password_hash: str | None = Field(default=None, max_length=200)
    created_at: datetime = created_at_field()
    updated_at: datetime | None = timestamp_field()


class Role(StrEnum):
    DISTRICT_ADMIN = "district_admin"
    TOWN_SUPERVISOR = "town_supervisor"
    VILLAGE_ADMIN = "village_admin"
    SCORING_LEADER = "scoring_leader"
    SCORER = "scorer"
    SHOP_ATTENDANT = "shop_attendant"


VILLAGE_ROLES = frozenset(
    {Role.VILLAGE_ADMIN, Role.SCORING_LEADER, Role.SCORER, Role.SHOP_ATTENDANT}
)


class RoleGrant(SQLModel, table=True):
    __tablename__ = "role_grant"
    __table_args__ = (
        sa.CheckConstraint(
            "(role = 'district_admin' AND town_id IS NULL AND village_id IS NULL)"
            " OR (role = 'town_supervisor' AND town_id IS NOT NULL AND village_id IS NULL)"
            " OR (role NOT IN ('district_admin', 'town_supervisor')"
            " AND town_id IS NOT NULL AND village_id IS NOT NULL)",
            name="scope_matches_role",
        ),
        sa.CheckConstraint("shop_id IS NULL OR role = 'shop_attendant'", name="shop_for_attendant"),
        sa.Index(
            "uq_role_grant_active",
            "person_id",
            "role",
            sa.text("coalesce(town_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            sa.text("coalesce(village_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            unique=True,
            postgresql_where=sa.text("revoked_at IS NULL"),
        ),
    )

    id: uuid.UUID = uuid_pk()
    person_id: uuid.UUID = Field(foreign_key="person.id", index=True)
    role: Role = enum_field(Role, "role")
    town_id: uuid.UUID | None = Field(default=None, foreign_key="town.id", index=True)
    village_id: uuid.UUID | None = Field(default=None, foreign_key="village.id", index=True)
    # A scorer may be limited to some village groups (包片); empty means the whole village.
    village_group_ids: list[uuid.UUID] = Field(
        default_factory=list,
        sa_column=sa.Column(
            ARRAY(sa.Uuid()), nullable=False, server_default=sa.text("'{}'::uuid[]")
        ),
    )
    # An attendant may be limited to one shop of the village; None means all its shops.
    shop_id: uuid.UUID | None = Field(default=None, foreign_key="shop.id", index=True)
    granted_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    created_at: datetime = created_at_field()
    revoked_at: datetime | None = timestamp_field()
    revoked_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")


class InviteCode(SQLModel, table=True):
    __tablename__ = "invite_code"

    id: uuid.UUID = uuid_pk()
    code_hash: str = Field(max_length=64, unique=True)
    person_id: uuid.UUID = Field(foreign_key="person.id", index=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    issued_by: uuid.UUID = Field(foreign_key="person.id")
    created_at: datetime = created_at_field()
    expires_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    used_at: datetime | None = timestamp_field()
