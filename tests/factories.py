"""Small async factories: each adds rows through the test session and flushes."""

import uuid
from datetime import date
from itertools import count

from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.config import Settings
from app.models import (
    Cadence,
    Household,
    HouseholdMember,
    ItemKind,
    LedgerEntry,
    LedgerKind,
    LoginMethod,
    Participation,
    Person,
    Role,
    RoleGrant,
    RuleCategory,
    RuleItem,
    RuleSet,
    RuleSetStatus,
    Town,
    Village,
    VillageGroup,
    VillageGroupKind,
)
from app.schemas.rules import Policy
from app.security import hash_password
from app.services import ledger
from app.services.auth import start_login

_seq = count(1)


def _n() -> int:
    return next(_seq)


async def create_town(db: AsyncSession, **overrides: object) -> Town:
    town = Town(**{"name": f"测试镇{_n()}", "district": "测试区", **overrides})
    db.add(town)
    await db.flush()
    return town


async def create_village(
    db: AsyncSession, town: Town | None = None, **overrides: object
) -> Village:
    town = town or await create_town(db)
    village = Village(**{"town_id": town.id, "name": f"测试村{_n()}", **overrides})
    db.add(village)
    await db.flush()
    return village


async def create_group(db: AsyncSession, village: Village, **overrides: object) -> VillageGroup:
    group = VillageGroup(
        **{
            "village_id": village.id,
            "name": f"第{_n()}村民小组",
            "kind": VillageGroupKind.GROUP,
            **overrides,
        }
    )
    db.add(group)
    await db.flush()
    return group


async def create_household(
    db: AsyncSession, village: Village, group: VillageGroup | None = None, **overrides: object
) -> Household:
    household = Household(
        **{
            "village_id": village.id,
            "village_group_id": group.id if group else None,
            "number": f"H{_n():05d}",
            "participation": Participation.ACTIVE,
            **overrides,
        }
    )
    db.add(household)
    await db.flush()
    return household


async def create_person(
    db: AsyncSession,
    village: Village | None = None,
    *,
    password: str | None = None,
    **overrides: object,
) -> Person:
    n = _n()
    fields: dict[str, object] = {
        "name": f"村民{n}",
        "phone": f"139{n:08d}",
        "village_id": village.id if village else None,
        **overrides,
    }
    if password is not None:
        fields.setdefault("username", f"user{n}")
        fields["password_hash"] = hash_password(password)
    person = Person(**fields)
    db.add(person)
    await db.flush()
    return person


async def add_member(
    db: AsyncSession, household: Household, person: Person | None = None, *, is_head: bool = False
) -> HouseholdMember:
    if person is None:
        village = await db.get(Village, household.village_id)
        person = await create_person(db, village)
    member = HouseholdMember(
        household_id=household.id,
        person_id=person.id,
        village_id=household.village_id,
        is_head=is_head,
        relation="户主" if is_head else "家庭成员",
    )
    db.add(member)
    await db.flush()
    return member


async def grant(
    db: AsyncSession,
    person: Person,
    role: Role,
    *,
    town: Town | None = None,
    village: Village | None = None,
    groups: list[VillageGroup] | None = None,
) -> RoleGrant:
    town_id = town.id if town else (village.town_id if village else None)
    row = RoleGrant(
        person_id=person.id,
        role=role,
        town_id=None if role is Role.DISTRICT_ADMIN else town_id,
        village_id=village.id if village else None,
        village_group_ids=[g.id for g in groups or []],
    )
    db.add(row)
    await db.flush()
    return row


async def login_headers(db: AsyncSession, settings: Settings, person: Person) -> dict[str, str]:
    tokens = await start_login(db, settings, person.id, LoginMethod.PASSWORD)
    return {"Authorization": f"Bearer {tokens.access_token}"}


def random_id() -> uuid.UUID:
    return uuid.uuid4()


async def create_rule_set(
    db: AsyncSession,
    village: Village,
    *,
    year: int,
    status: RuleSetStatus = RuleSetStatus.APPROVED,
    policy: Policy | None = None,
    version: int = 1,
    effective_from: date | None = None,
) -> tuple[RuleSet, RuleCategory, RuleItem]:
    """A rule set with one capped category and one inspection item worth 10."""
    rule_set = RuleSet(
        village_id=village.id,
        town_id=village.town_id,
        year=year,
        version=version,
        status=RuleSetStatus.DRAFT,
        title=f"{year}年积分细则",
        effective_from=effective_from or date(year, 1, 1),
        policy=(policy or Policy()).model_dump(mode="json"),
    )
    db.add(rule_set)
    await db.flush()
    category = RuleCategory(rule_set_id=rule_set.id, village_id=village.id, name="环境卫生", cap=10)
    db.add(category)
    await db.flush()
    item = RuleItem(
        rule_set_id=rule_set.id,
        village_id=village.id,
        category_id=category.id,
        code="1.1",
        title="宅前屋后保持干净",
        points=10,
        kind=ItemKind.INSPECTION,
        cadence=Cadence.MONTHLY,
    )
    db.add(item)
    await db.flush()
    # Filled while a draft: the database refuses rows added to an approved set.
    rule_set.status = status
    await db.flush()
    return rule_set, category, item


async def create_entry(
    db: AsyncSession, household: Household, *, points: int, kind: LedgerKind = LedgerKind.BONUS
) -> LedgerEntry:
    """One entry posted through the ledger service, as the product posts them."""
    [row] = await ledger.post(
        db,
        household.village_id,
        [
            ledger.NewEntry(
                household_id=household.id,
                kind=kind,
                points=points,
                counts_score=True,
                counts_balance=True,
                year=clock.today().year,
                source_type="test",
            )
        ],
    )
    entry = await db.get(LedgerEntry, row["id"])
    assert entry is not None
    return entry
