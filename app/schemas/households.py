import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from app.models import Participation

HouseholdNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)
]
PersonName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^1[0-9]{10}$")]
Relation = Annotated[str, StringConstraints(strip_whitespace=True, max_length=20)]
Address = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return phone
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 7 else "****"


class HouseholdCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: HouseholdNumber
    village_group_id: uuid.UUID | None = None
    address: Address = ""
    local_hukou: bool = True
    homestead_house: bool = True
    has_resident: bool = True
    renter: bool = False
    participation: Participation = Participation.PENDING
    joined_on: date | None = None


class HouseholdUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: HouseholdNumber | None = None
    village_group_id: uuid.UUID | None = None
    address: Address | None = None
    local_hukou: bool | None = None
    homestead_house: bool | None = None
    has_resident: bool | None = None
    renter: bool | None = None
    participation: Participation | None = None
    joined_on: date | None = None


class MemberRead(BaseModel):
    id: uuid.UUID
    person_id: uuid.UUID
    name: str
    phone: str | None = None
    is_head: bool
    relation: str


class HouseholdSummary(BaseModel):
    id: uuid.UUID
    village_id: uuid.UUID
    village_group_id: uuid.UUID | None
    number: str
    address: str
    participation: Participation
    head_name: str | None
    member_count: int


class HouseholdRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    village_id: uuid.UUID
    village_group_id: uuid.UUID | None
    number: str
    address: str
    local_hukou: bool
    homestead_house: bool
    has_resident: bool
    renter: bool
    participation: Participation
    joined_on: date | None
    created_at: datetime
    members: list[MemberRead] = []


class MemberCreate(BaseModel):
    """A new person (name, phone) or an existing one of the village (person_id)."""

    model_config = ConfigDict(extra="forbid")
    person_id: uuid.UUID | None = None
    name: PersonName | None = None
    phone: Phone | None = None
    is_head: bool = False
    relation: Relation = ""


class MemberUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: PersonName | None = None
    phone: Phone | None = None
    is_head: bool | None = None
    relation: Relation | None = None


class InviteRead(BaseModel):
    code: str
    person_id: uuid.UUID
    expires_at: datetime
