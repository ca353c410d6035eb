import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from app.models import VillageGroupKind

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class TownCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    district: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""


class TownUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    district: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None


class TownRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    district: str
    created_at: datetime


class VillageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


class VillageUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None


class VillageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    town_id: uuid.UUID
    name: str
    created_at: datetime


class VillageGroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    kind: VillageGroupKind = VillageGroupKind.GROUP


class VillageGroupUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    kind: VillageGroupKind | None = None


class VillageGroupRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    village_id: uuid.UUID
    name: str
    kind: VillageGroupKind
    created_at: datetime
