import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from app.models import Role
from app.schemas.households import HouseholdRead, PersonName, Phone

Username = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$"
    ),
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=200)]


class PersonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: PersonName
    phone: Phone | None = None
    village_id: uuid.UUID | None = None
    username: Username | None = None
    password: Password | None = None


class PersonUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: PersonName | None = None
    phone: Phone | None = None


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    password: Password


class PersonRead(BaseModel):
    id: uuid.UUID
    name: str
    phone: str | None
    village_id: uuid.UUID | None
    username: str | None
    created_at: datetime


class RoleGrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    person_id: uuid.UUID
    role: Role
    town_id: uuid.UUID | None = None
    village_id: uuid.UUID | None = None
    village_group_ids: list[uuid.UUID] = []
    # A shop attendant limited to one shop serving the village (default: all of them).
    shop_id: uuid.UUID | None = None


class RoleGrantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    person_id: uuid.UUID
    role: Role
    town_id: uuid.UUID | None
    village_id: uuid.UUID | None
    village_group_ids: list[uuid.UUID]
    created_at: datetime
    revoked_at: datetime | None
    shop_id: uuid.UUID | None = None


class MeRead(BaseModel):
    person: PersonRead
    household: HouseholdRead | None
    grants: list[RoleGrantRead]
