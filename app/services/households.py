import secrets
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import ensure_may_manage_account, household_scope
from app.errors import Conflict, NotFound, Unprocessable
from app.models import Household, HouseholdMember, InviteCode, Participation, Person, VillageGroup
from app.pagination import PageParams, paginate
from app.schemas.households import (
    HouseholdCreate,
    HouseholdRead,
    HouseholdSummary,
    HouseholdUpdate,
    InviteRead,
    MemberCreate,
    MemberRead,
    MemberUpdate,
    mask_phone,
)
from app.security import Principal, token_digest
from app.services import audit
from app.services.organisation import get_village, get_village_for_admin

# No 0/O or 1/I: codes are read aloud and typed on a phone.
INVITE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def phone_for(principal: Principal, person: Person) -> str | None:
    """Full numbers only for the person themself and the admins of the person's village."""
    if person.id == principal.person_id or principal.is_village_admin_of(person.village_id):
        return person.phone
    return mask_phone(person.phone)


async def household_read(
    session: AsyncSession, principal: Principal, household: Household
) -> HouseholdRead:
    rows = (
        await session.execute(
            select(HouseholdMember, Person)
            .join(Person, col(Person.id) == col(HouseholdMember.person_id))
            .where(col(HouseholdMember.household_id) == household.id)
            .order_by(col(HouseholdMember.is_head).desc(), col(Person.name), col(Person.id))
        )
    ).all()
    members = [
        MemberRead(
            id=m.id,
            person_id=p.id,
            name=p.name,
            phone=phone_for(principal, p),
            is_head=m.is_head,
            relation=m.relation,
        )
        for m, p in rows
    ]
    return HouseholdRead.model_validate(household).model_copy(update={"members": members})


async def _check_group(
    session: AsyncSession, village_id: uuid.UUID, group_id: uuid.UUID | None
) -> None:
    if group_id is None:
        return
    found = (
        await session.execute(
            select(col(VillageGroup.id)).where(
                col(VillageGroup.id) == group_id, col(VillageGroup.village_id) == village_id
            )
        )
    ).first()
    if found is None:
        raise Unprocessable(
            "The village group is not in this village.", code="household.group_not_in_village"
        )


async def _number_taken(
    session: AsyncSession, village_id: uuid.UUID, number: str, exclude: uuid.UUID | None = None
) -> bool:
    statement = select(col(Household.id)).where(
        col(Household.village_id) == village_id, col(Household.number) == number
    )
    if exclude is not None:
        statement = statement.where(col(Household.id) != exclude)
    return (await session.execute(statement)).first() is not None


async def create_household(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, data: HouseholdCreate
) -> Household:
    village = await get_village_for_admin(session, principal, village_id)
    await _check_group(session, village.id, data.village_group_id)
    if await _number_taken(session, village.id, data.number):
        raise Conflict(
            "The village already has a household with this number.", code="household.number_taken"
        )
    household = Household(village_id=village.id, **data.model_dump())
    session.add(household)
    await session.flush()
    audit.record(
        session,
        principal,
        "household.create",
        "household",
        household.id,
        after=audit.snapshot(household),
        town_id=village.town_id,
        village_id=village.id,
    )
    return household


async def list_households(
    session: AsyncSession,
    principal: Principal,
    village_id: uuid.UUID,
    params: PageParams,
    *,
    group_id: uuid.UUID | None = None,
    participation: Participation | None = None,
) -> tuple[list[HouseholdSummary], str | None]:
    village = await get_village(session, principal, village_id)
    head = (
        select(col(Person.name))
        .join(HouseholdMember, col(HouseholdMember.person_id) == col(Person.id))
        .where(col(HouseholdMember.household_id) == col(Household.id), col(HouseholdMember.is_head))
        .scalar_subquery()
    )
    count = (
        select(func.count())
        .where(col(HouseholdMember.household_id) == col(Household.id))
        .scalar_subquery()
    )
    statement = select(Household, head.label("head_name"), count.label("member_count")).where(
        col(Household.village_id) == village.id, household_scope(principal)
    )
    if group_id is not None:
        statement = statement.where(col(Household.village_group_id) == group_id)
    if participation is not None:
        statement = statement.where(col(Household.participation) == participation)
    rows, cursor = await paginate(
        session,
        statement,
        order=[col(Household.number), col(Household.id)],
        params=params,
        parse=[str, uuid.UUID],
    )
    return [
        HouseholdSummary(
            id=h.id,
            village_id=h.village_id,
            village_group_id=h.village_group_id,
            number=h.number,
            address=h.address,
            participation=h.participation,
            head_name=head_name,
            member_count=member_count,
        )
        for h, head_name, member_count in rows
    ], cursor


async def get_household(
    session: AsyncSession, principal: Principal, household_id: uuid.UUID, *, admin: bool = False
) -> Household:
    household = (
        await session.execute(
            select(Household).where(
                col(Household.id) == household_id, household_scope(principal, admin_only=admin)
            )
        )
    ).scalar_one_or_none()
    if household is None:
        raise NotFound("No such household.", code="household.not_found")
    return household


async def update_household(
    session: AsyncSession, principal: Principal, household_id: uuid.UUID, data: HouseholdUpdate
) -> Household:
    household = await get_household(session, principal, household_id, admin=True)
    before = audit.snapshot(household)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    if "village_group_id" in changes:
        await _check_group(session, household.village_id, changes["village_group_id"])
    for key in (
        "number",
        "address",
        "participation",
        "local_hukou",
        "homestead_house",
        "has_resident",
        "renter",
    ):
        if key in changes and changes[key] is None:
            raise Unprocessable(f"{key} cannot be null.", code="household.field_required")
    if "number" in changes and await _number_taken(
        session, household.village_id, changes["number"], household.id
    ):
        raise Conflict(
            "The village already has a household with this number.", code="household.number_taken"
        )
    for key, value in changes.items():
        setattr(household, key, value)
    household.updated_at = clock.now()
    await session.flush()
    audit.record(
        session,
        principal,
        "household.update",
        "household",
        household.id,
        before=before,
        after=audit.snapshot(household),
        village_id=household.village_id,
    )
    return household


async def _clear_head(session: AsyncSession, household_id: uuid.UUID) -> None:
    await session.execute(
        update(HouseholdMember)
        .where(col(HouseholdMember.household_id) == household_id, col(HouseholdMember.is_head))
        .values(is_head=False)
    )


async def add_member(
    session: AsyncSession, principal: Principal, household_id: uuid.UUID, data: MemberCreate
) -> HouseholdMember:
    household = await get_household(session, principal, household_id, admin=True)
    if (data.person_id is None) == (data.name is None):
        raise Unprocessable(
            "Give either person_id (an existing person) or name (a new one).",
            code="member.person_or_name",
        )
    if data.person_id is not None:
        person = (
            await session.execute(
                select(Person).where(
                    col(Person.id) == data.person_id, col(Person.village_id) == household.village_id
                )
            )
        ).scalar_one_or_none()
        if person is None:
            raise NotFound("No such person in this village.", code="person.not_found")
        if (
            await session.execute(
                select(col(HouseholdMember.id)).where(col(HouseholdMember.person_id) == person.id)
            )
        ).first():
            raise Conflict(
                "The person already belongs to a household.", code="member.already_in_household"
            )
    else:
        assert data.name is not None
        person = Person(name=data.name, phone=data.phone, village_id=household.village_id)
        session.add(person)
        await session.flush()
    if data.is_head:
        await _clear_head(session, household.id)
    member = HouseholdMember(
        household_id=household.id,
        person_id=person.id,
        village_id=household.village_id,
        is_head=data.is_head,
        relation=data.relation,
    )
    session.add(member)
    await session.flush()
    audit.record(
        session,
        principal,
        "member.add",
        "household_member",
        member.id,
        after={**(audit.snapshot(member) or {}), "name": person.name},
        village_id=household.village_id,
    )
    return member


async def _member_for_admin(
    session: AsyncSession, principal: Principal, member_id: uuid.UUID
) -> tuple[HouseholdMember, Person]:
    row = (
        await session.execute(
            select(HouseholdMember, Person)
            .join(Person, col(Person.id) == col(HouseholdMember.person_id))
            .join(Household, col(Household.id) == col(HouseholdMember.household_id))
            .where(
                col(HouseholdMember.id) == member_id, household_scope(principal, admin_only=True)
            )
        )
    ).first()
    if row is None:
        raise NotFound("No such household member.", code="member.not_found")
    return row[0], row[1]


async def update_member(
    session: AsyncSession, principal: Principal, member_id: uuid.UUID, data: MemberUpdate
) -> HouseholdMember:
    member, person = await _member_for_admin(session, principal, member_id)
    await ensure_may_manage_account(session, principal, person.id)
    before = {**(audit.snapshot(member) or {}), "name": person.name, "phone": person.phone}
    if data.name is not None:
        person.name = data.name
    if "phone" in data.model_fields_set:
        person.phone = data.phone
    if data.relation is not None:
        member.relation = data.relation
    if data.is_head is not None and data.is_head != member.is_head:
        if data.is_head:
            await _clear_head(session, member.household_id)
        member.is_head = data.is_head
    person.updated_at = clock.now()
    await session.flush()
    audit.record(
        session,
        principal,
        "member.update",
        "household_member",
        member.id,
        before=before,
        after={**(audit.snapshot(member) or {}), "name": person.name, "phone": person.phone},
        village_id=member.village_id,
    )
    return member


async def remove_member(session: AsyncSession, principal: Principal, member_id: uuid.UUID) -> None:
    member, person = await _member_for_admin(session, principal, member_id)
    audit.record(
        session,
        principal,
        "member.remove",
        "household_member",
        member.id,
        before={**(audit.snapshot(member) or {}), "name": person.name},
        village_id=member.village_id,
    )
    # An invite printed for someone who has left must not let anyone in as them.
    await session.execute(
        update(InviteCode)
        .where(col(InviteCode.person_id) == person.id, col(InviteCode.used_at).is_(None))
        .values(expires_at=func.now())
    )
    await session.delete(member)
    await session.flush()


async def issue_invite(
    session: AsyncSession, principal: Principal, member_id: uuid.UUID, valid_for: timedelta
) -> InviteRead:
    member, person = await _member_for_admin(session, principal, member_id)
    await ensure_may_manage_account(session, principal, person.id)
    # A new code replaces any earlier unused one, so a lost slip of paper stops working.
    await session.execute(
        update(InviteCode)
        .where(col(InviteCode.person_id) == person.id, col(InviteCode.used_at).is_(None))
        .values(expires_at=func.now())
    )
    code = "".join(secrets.choice(INVITE_ALPHABET) for _ in range(8))
    expires = clock.now() + valid_for
    invite = InviteCode(
        code_hash=token_digest(code),
        person_id=person.id,
        village_id=member.village_id,
        issued_by=principal.person_id,
        expires_at=expires,
    )
    session.add(invite)
    await session.flush()
    audit.record(
        session,
        principal,
        "invite.issue",
        "invite_code",
        invite.id,
        after={"person_id": str(person.id), "expires_at": expires.isoformat()},
        village_id=member.village_id,
    )
    return InviteRead(code=code, person_id=person.id, expires_at=expires)
