"""The demo town: an empty database gets 张堰镇 with three villages and a user for every role.

Everything is generated from a fixed seed, so two demo databases hold the same names, phones
and household numbers. Only the invite code changes: it is stored as a digest, so a fresh one
is issued on every run and printed.
"""

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from app import clock
from app.config import get_settings
from app.db import create_engine, create_sessionmaker
from app.errors import AppError
from app.models import (
    Household,
    HouseholdMember,
    ItemKind,
    Outcome,
    Participation,
    Person,
    Role,
    RoleGrant,
    ScoringPeriod,
    Shop,
    Town,
    Village,
    VillageGroup,
    VillageGroupKind,
    WechatIdentity,
)
from app.schemas.rules import ItemCreate, RuleSetCreate
from app.schemas.scorecards import ScorecardLineWrite, ScorecardWrite
from app.schemas.shop import OrderCreate, OrderLineCreate, ShopCreate, ShopItemCreate
from app.security import Grant, Principal, hash_password
from app.services import (
    households,
    periods,
    rule_drafts,
    rules,
    scorecards,
    shop_cards,
    shop_orders,
)
from app.services import shop as shop_service

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEMO_PASSWORD = "demo1234"
DEMO_OPENID = "demo-villager"
INVITE_DAYS = 30
# Same alphabet as the invite codes village admins issue: no 0/O or 1/I to misread.
# Serialises concurrent `demo` runs so two processes cannot both find the database empty.
ADVISORY_LOCK_KEY = 0x7670_6465_6D6F  # "vpdemo"
SEED = 20240408  # the date of 张府发〔2024〕15号

TOWN = ("张堰镇", "金山区")


@dataclass(frozen=True)
class VillagePlan:
    name: str
    slug: str  # for usernames
    kind: VillageGroupKind
    groups: tuple[tuple[str, str, int], ...]  # (name, short name in addresses, households)
    template: str  # the seed scheme the village's rules start from


VILLAGES = (
    VillagePlan(
        "新秀村",
        "xinxiu",
        VillageGroupKind.GROUP,
        (("第一村民小组", "1组", 6), ("第二村民小组", "2组", 6), ("第三村民小组", "3组", 6)),
        "zhangyan-governance-2024",
    ),
    VillagePlan(
        "秦望村",
        "qinwang",
        VillageGroupKind.AREA,
        (("东片区", "东片", 9), ("西片区", "西片", 8)),
        "qingpu-eco-green-2024",
    ),
    VillagePlan(
        "百家村",
        "baijia",
        VillageGroupKind.GROUP,
        (("第一村民小组", "1组", 8), ("第二村民小组", "2组", 7)),
        "wengyuan-governance-2023",
    ),
)
# 翁源's seed leaves its item annex out, so its template has none; these stand for the items
# 百家村 would write itself (deductions from the monthly 100).
BAIJIA_ITEMS = (
    ("人居环境", "1", "房前屋后乱堆乱放", 5),
    ("人居环境", "2", "生活垃圾未分类投放", 5),
    ("人居环境", "3", "违规搭建", 10),
    ("乡风文明", "4", "不赡养老人、家庭不和睦", 10),
    ("乡风文明", "5", "参与赌博等不良风气", 10),
)
HOME = VILLAGES[0]  # the village where the villager-side logins and the scorers live

# Demo usernames; the village-level ones not named after a village work in HOME.
DISTRICT_ADMIN = "district"
TOWN_SUPERVISOR = "zhangyan"
SCORING_LEADER = f"{HOME.slug}-leader"
SCORER = f"{HOME.slug}-scorer"
SHOP_ATTENDANT = f"{HOME.slug}-shop"
ROLE_LABELS = {
    Role.DISTRICT_ADMIN: "district admin",
    Role.TOWN_SUPERVISOR: "town supervisor",
    Role.VILLAGE_ADMIN: "village admin",
    Role.SCORING_LEADER: "scoring leader",
    Role.SCORER: "scorer",
    Role.SHOP_ATTENDANT: "shop attendant",
}


def village_admin(plan: VillagePlan) -> str:
    return f"{plan.slug}-admin"


DEMO_USERNAMES = (
    DISTRICT_ADMIN,
    TOWN_SUPERVISOR,
    *(village_admin(v) for v in VILLAGES),
    SCORING_LEADER,
    SCORER,
    SHOP_ATTENDANT,
)

SURNAMES = "陆沈顾朱徐金姚俞蔡钱费张王李陈杨周吴蒋黄曹卫"
# Given names by generation, so a grandmother is not called 子轩.
ELDER_MALE = ("林根", "金龙", "忠明", "荣生", "阿弟", "福林", "根宝", "水根", "士林", "炳荣")
ELDER_FEMALE = ("桂英", "秀英", "月娥", "凤珍", "杏娣", "彩娣", "美英", "菊芳", "兰英", "雪妹")
MIDDLE_MALE = ("建国", "卫东", "国华", "伟民", "志刚", "海林", "建平", "明华", "春林", "永康")
MIDDLE_FEMALE = ("丽萍", "红梅", "海燕", "玉芳", "雪芳", "静芬", "美华", "建英", "秀琴", "惠娟")
YOUNG_MALE = ("俊杰", "晓东", "浩然", "子轩", "宇航", "家豪", "佳明", "文斌", "一鸣", "天宇")
YOUNG_FEMALE = ("诗涵", "佳怡", "梓萱", "欣怡", "雨婷", "思琪", "晓雯", "嘉敏", "婷婷", "怡然")
PHONE_PREFIXES = (
    *("133", "135", "136", "137", "138", "139", "150", "151", "158", "159"),
    *("177", "180", "181", "186", "187", "189", "199"),
)


@dataclass(frozen=True)
class StaffLine:
    role: Role
    username: str
    name: str
    scope: str


@dataclass(frozen=True)
class DemoSummary:
    created: bool
    town: str
    villages: int
    groups: int
    households: int
    members: int
    staff: list[StaffLine]
    villager: str | None  # "name (village household)"
    unbound: str | None
    unbound_phone: str | None
    invite_code: str | None
    invite_expires: datetime | None
    rules: list[str]
    history: list[str]
    shop: list[str] = field(default_factory=list)


class _Names:
    """Deterministic people: plausible names and unique mobile numbers."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.phones: set[str] = set()

    def surname(self) -> str:
        return self.rng.choice(SURNAMES)

    def given(self, generation: str, female: bool) -> str:
        pools = {
            "elder": (ELDER_MALE, ELDER_FEMALE),
            "middle": (MIDDLE_MALE, MIDDLE_FEMALE),
            "young": (YOUNG_MALE, YOUNG_FEMALE),
        }
        return self.rng.choice(pools[generation][female])

    def phone(self) -> str:
        while True:
            number = self.rng.choice(PHONE_PREFIXES) + f"{self.rng.randrange(10**8):08d}"
            if number not in self.phones:
                self.phones.add(number)
                return number


class Resident(NamedTuple):
    name: str
    relation: str  # 与户主关系
    phone: str | None
    is_head: bool


def _household_people(names: _Names, size: int) -> list[Resident]:
    rng = names.rng
    family = names.surname()
    head_generation = rng.choice(("elder", "middle", "middle"))
    head_female = rng.random() < 0.15
    people = [
        Resident(family + names.given(head_generation, head_female), "户主", names.phone(), True)
    ]
    if size >= 2:
        spouse = names.surname() + names.given(head_generation, not head_female)
        # Many elderly villagers have no mobile phone of their own.
        phone = names.phone() if head_generation == "middle" or rng.random() < 0.5 else None
        people.append(Resident(spouse, "配偶", phone, False))
    if size >= 3:
        child_generation = "middle" if head_generation == "elder" else "young"
        female = rng.random() < 0.5
        relation = "女" if female else "子"
        child = family + names.given(child_generation, female)
        people.append(Resident(child, relation, names.phone(), False))
    if size >= 4:
        if head_generation == "elder":
            female = rng.random() < 0.5
            relation = "孙女" if female else "孙子"
            people.append(Resident(family + names.given("young", female), relation, None, False))
        else:
            mother = names.surname() + names.given("elder", True)
            people.append(Resident(mother, "母亲", None, False))
    return people


async def _seed(session: AsyncSession, password_hash: str) -> None:
    rng = random.Random(SEED)
    names = _Names(rng)

    town = Town(name=TOWN[0], district=TOWN[1])
    session.add(town)
    await session.flush()

    villages: list[tuple[VillagePlan, Village, list[tuple[str, VillageGroup]]]] = []
    for plan in VILLAGES:
        village = Village(town_id=town.id, name=plan.name)
        groups = [
            (short, VillageGroup(village_id=village.id, name=name, kind=plan.kind))
            for name, short, _ in plan.groups
        ]
        villages.append((plan, village, groups))
        session.add(village)
        session.add_all(group for _, group in groups)
    await session.flush()

    persons: list[Person] = []
    households: list[Household] = []
    members: list[HouseholdMember] = []
    # (village, group index, household index in group) -> person ids, head first
    people_of: dict[tuple[str, int, int], list[uuid.UUID]] = {}
    for plan, village, groups in villages:
        index = 0
        for g, ((_, _, count), (short, group)) in enumerate(zip(plan.groups, groups, strict=True)):
            for n in range(count):
                index += 1
                # The first households of each village are the ones the demo logs in as,
                # so they stay active; others are sometimes pending or suspended.
                roll = rng.random()
                if index <= 3 or roll >= 0.16:
                    participation = Participation.ACTIVE
                elif roll < 0.10:
                    participation = Participation.PENDING
                else:
                    participation = Participation.SUSPENDED
                renter = index > 3 and rng.random() < 0.08
                household = Household(
                    village_id=village.id,
                    village_group_id=group.id,
                    number=f"{g + 1:02d}{n + 1:03d}",
                    address=f"{TOWN[0]}{plan.name}{short}{rng.randrange(1, 260)}号",
                    local_hukou=not renter,
                    homestead_house=not renter,
                    has_resident=index <= 3 or rng.random() >= 0.05,
                    renter=renter,
                    participation=participation,
                    joined_on=(
                        date(2024, rng.randint(5, 10), rng.randint(1, 28))
                        if participation is not Participation.PENDING
                        else None
                    ),
                )
                households.append(household)
                size = rng.choices((1, 2, 3, 4), weights=(2, 4, 4, 3))[0]
                ids = []
                for name, relation, phone, is_head in _household_people(names, size):
                    person = Person(name=name, phone=phone, village_id=village.id)
                    persons.append(person)
                    members.append(
                        HouseholdMember(
                            household_id=household.id,
                            person_id=person.id,
                            village_id=village.id,
                            is_head=is_head,
                            relation=relation,
                        )
                    )
                    ids.append(person.id)
                people_of[(plan.slug, g, n)] = ids

    # Village staff who are also villagers: the leader heads the first household of group 1,
    # the scorer lives in group 2 and walks its round (包片).
    leader_id = people_of[(HOME.slug, 0, 0)][0]
    scorer_id = people_of[(HOME.slug, 1, 0)][0]
    villager_id = people_of[(HOME.slug, 0, 1)][0]
    staff_persons: list[Person] = []
    by_id = {p.id: p for p in persons}
    for person_id, username in ((leader_id, SCORING_LEADER), (scorer_id, SCORER)):
        by_id[person_id].username = username
        by_id[person_id].password_hash = password_hash

    def staff(name: str, username: str, village: Village | None) -> Person:
        person = Person(
            name=name,
            phone=names.phone(),
            village_id=village.id if village else None,
            username=username,
            password_hash=password_hash,
        )
        staff_persons.append(person)
        return person

    home_village, home_groups = villages[0][1], villages[0][2]
    # Surnames outside SURNAMES, so no villager shares a staff member's name.
    district = staff("许明华", DISTRICT_ADMIN, None)
    supervisor = staff("郁丽萍", TOWN_SUPERVISOR, None)
    admins = {
        plan.slug: staff(name, village_admin(plan), village)
        for (plan, village, _), name in zip(villages, ("潘建英", "戴卫国", "褚海燕"), strict=True)
    }
    shop = staff("严秀琴", SHOP_ATTENDANT, home_village)

    session.add_all(persons + staff_persons)
    await session.flush()
    session.add_all(households)
    await session.flush()
    session.add_all(members)

    def grant(
        person_id: uuid.UUID,
        role: Role,
        town_id: uuid.UUID | None = None,
        village_id: uuid.UUID | None = None,
        village_group_ids: list[uuid.UUID] | None = None,
    ) -> RoleGrant:
        return RoleGrant(
            person_id=person_id,
            role=role,
            town_id=town_id,
            village_id=village_id,
            village_group_ids=village_group_ids or [],
            granted_by=district.id,
        )

    grants = [
        grant(district.id, Role.DISTRICT_ADMIN),
        grant(supervisor.id, Role.TOWN_SUPERVISOR, town_id=town.id),
        *(
            grant(admins[plan.slug].id, Role.VILLAGE_ADMIN, town_id=town.id, village_id=village.id)
            for plan, village, _ in villages
        ),
        grant(leader_id, Role.SCORING_LEADER, town_id=town.id, village_id=home_village.id),
        grant(
            scorer_id,
            Role.SCORER,
            town_id=town.id,
            village_id=home_village.id,
            village_group_ids=[home_groups[1][1].id],
        ),
        grant(shop.id, Role.SHOP_ATTENDANT, town_id=town.id, village_id=home_village.id),
    ]
    session.add_all(grants)
    # session_key is replaced by the real one at the first login through the fake server.
    session.add(WechatIdentity(openid=DEMO_OPENID, session_key="demo", person_id=villager_id))
    await session.flush()


async def _issue_invite(session: AsyncSession) -> tuple[str, str, str | None, datetime] | None:
    """A fresh invite for the first unbound villager of HOME; (code, who, phone, expiry)."""
    admin = (
        await session.execute(
            select(col(Person.id), col(RoleGrant.village_id))
            .join(RoleGrant, col(RoleGrant.person_id) == col(Person.id))
            .where(
                col(Person.username) == village_admin(HOME),
                col(RoleGrant.role) == Role.VILLAGE_ADMIN,
                col(RoleGrant.revoked_at).is_(None),
            )
        )
    ).first()
    if admin is None or admin.village_id is None:
        return None
    member = (
        await session.execute(
            select(
                col(Person.id),
                col(Person.name),
                col(Person.phone),
                col(Household.number),
                col(HouseholdMember.id),
            )
            .join(HouseholdMember, col(HouseholdMember.person_id) == col(Person.id))
            .join(Household, col(Household.id) == col(HouseholdMember.household_id))
            .outerjoin(WechatIdentity, col(WechatIdentity.person_id) == col(Person.id))
            .where(
                col(HouseholdMember.village_id) == admin.village_id,
                col(WechatIdentity.id).is_(None),
                col(Person.username).is_(None),
                col(Person.phone).is_not(None),
                col(Household.participation) == Participation.ACTIVE,
            )
            .order_by(col(Household.number), col(HouseholdMember.is_head).desc(), col(Person.name))
            .limit(1)
        )
    ).first()
    if member is None:
        return None
    _person_id, name, phone, number, member_id = member
    issuer = Principal(
        person_id=admin.id,
        session_id=uuid.uuid4(),
        grants=(Grant(Role.VILLAGE_ADMIN, None, admin.village_id),),
    )
    invite = await households.issue_invite(session, issuer, member_id, timedelta(days=INVITE_DAYS))
    return invite.code, f"{name} ({HOME.name} 户号 {number})", phone, invite.expires_at


async def _staff_lines(session: AsyncSession) -> list[StaffLine]:
    rows = (
        await session.execute(
            select(
                col(Person.username),
                col(Person.name),
                col(RoleGrant.role),
                col(Town.name),
                col(Village.name),
                col(RoleGrant.village_group_ids),
            )
            .join(RoleGrant, col(RoleGrant.person_id) == col(Person.id))
            .outerjoin(Town, col(Town.id) == col(RoleGrant.town_id))
            .outerjoin(Village, col(Village.id) == col(RoleGrant.village_id))
            .where(col(Person.username).in_(DEMO_USERNAMES), col(RoleGrant.revoked_at).is_(None))
        )
    ).all()
    group_ids = {gid for *_, ids in rows for gid in ids}
    group_names = dict(
        (
            await session.execute(
                select(col(VillageGroup.id), col(VillageGroup.name)).where(
                    col(VillageGroup.id).in_(group_ids)
                )
            )
        ).all()
    )
    lines = []
    for username, name, role, town, village, ids in rows:
        # Outer joins: a district grant has neither town nor village.
        scope: str = village or town or "all towns"
        if ids:
            scope += " " + "、".join(group_names.get(g, "?") for g in ids)
        lines.append(StaffLine(Role(role), username or "", name, scope))
    order = {name: i for i, name in enumerate(DEMO_USERNAMES)}
    return sorted(lines, key=lambda line: (order[line.username], line.role))


async def _villager(session: AsyncSession) -> str | None:
    row = (
        await session.execute(
            select(col(Person.name), col(Village.name), col(Household.number))
            .join(WechatIdentity, col(WechatIdentity.person_id) == col(Person.id))
            .join(HouseholdMember, col(HouseholdMember.person_id) == col(Person.id))
            .join(Household, col(Household.id) == col(HouseholdMember.household_id))
            .join(Village, col(Village.id) == col(Household.village_id))
            .where(col(WechatIdentity.openid) == DEMO_OPENID)
        )
    ).first()
    if row is None:
        return None
    name, village, number = row
    return f"{name} ({village} 户号 {number})"


async def _count(session: AsyncSession, model: type[SQLModel]) -> int:
    return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def _district_admin(session: AsyncSession) -> Principal:
    """The demo acts through the services as the district admin, so its data passes the same
    checks and leaves the same audit trail as a village's."""
    admin_id = (
        await session.execute(select(col(Person.id)).where(col(Person.username) == DISTRICT_ADMIN))
    ).scalar_one()
    grants = (Grant(Role.DISTRICT_ADMIN, None, None),)
    return Principal(person_id=admin_id, session_id=uuid.uuid4(), grants=grants)


def _demo_outcome(household: int, item: int, month: int, kind: ItemKind) -> Outcome:
    # Findings picked deterministically, so every demo shows the same history.
    finding = kind is ItemKind.INSPECTION and (household * 7 + item * 3 + month) % 11 == 0
    return Outcome.FINDING if finding else Outcome.COMPLIANT


async def _ensure_rules(session: AsyncSession) -> list[str]:
    """Each demo village has approved rules for this year, from its own seed template."""
    admin = await _district_admin(session)
    year = clock.today().year
    lines = []
    for plan in VILLAGES:
        village = (
            await session.execute(select(Village).where(col(Village.name) == plan.name))
        ).scalar_one()
        in_force = await rules.rule_set_in_force(session, village.id, date(year, 1, 1))
        if in_force is None:
            draft = await rule_drafts.create_rule_set(
                session, admin, village.id, RuleSetCreate(year=year, template_code=plan.template)
            )
            if plan.template == "wengyuan-governance-2023":
                tree = await rules.rule_set_read(session, draft)
                categories = {c.name: c.id for c in tree.categories}
                for category, code, title, points in BAIJIA_ITEMS:
                    await rule_drafts.add_item(
                        session,
                        admin,
                        draft.id,
                        ItemCreate(
                            category_id=categories[category], code=code, title=title, points=points
                        ),
                    )
            await rule_drafts.submit(session, admin, draft.id)
            in_force = await rule_drafts.approve(session, admin, draft.id)
        lines.append(f"{plan.name}: {in_force.title} (v{in_force.version}, {plan.template})")
    return lines


async def _ensure_history(session: AsyncSession) -> list[str]:
    """The home village's last two months scored, approved and published, so the ledger,
    balances and publication lists have something to show."""
    admin = await _district_admin(session)
    village = (
        await session.execute(select(Village).where(col(Village.name) == HOME.name))
    ).scalar_one()
    today = clock.today()
    lines = []
    for month in range(max(1, today.month - 2), today.month):
        starts_on = date(today.year, month, 1)
        exists = await session.execute(
            select(col(ScoringPeriod.id)).where(
                col(ScoringPeriod.village_id) == village.id,
                col(ScoringPeriod.starts_on) == starts_on,
            )
        )
        if exists.first() is not None:
            continue
        period = await periods.open_period(session, admin, village.id, starts_on)
        work = await scorecards.worklist(session, admin, period.id)
        cards = [
            (
                household.household_id,
                ScorecardWrite(
                    id=uuid.uuid4(),
                    lines=[
                        ScorecardLineWrite(
                            id=uuid.uuid4(),
                            rule_item_id=item.id,
                            outcome=Outcome.FINDING
                            if item.kind is ItemKind.INSPECTION
                            and (n * 7 + k * 3 + month) % 11 == 0
                            else Outcome.COMPLIANT,
                        )
                        for k, item in enumerate(work.items)
                    ],
                ),
            )
            for n, household in enumerate(work.households)
        ]
        await scorecards.save_cards(session, admin, period.id, cards)
        await periods.submit(session, admin, period.id)
        await periods.approve(session, admin, period.id)
        await periods.publish(session, admin, period.id)
        lines.append(
            f"{HOME.name} {today.year}年{month}月: {len(cards)} households scored and published"
        )
    return lines


async def _ensure_claims(session: AsyncSession) -> list[str]:
    """In the home village: claims pending, approved and rejected, one recorded on a
    villager's behalf, and an activity announced for tomorrow morning."""
    from app.models import Claim, ReviewDecision, RuleItem
    from app.schemas.activities import ActivityCreate
    from app.schemas.claims import ClaimCreate, ReviewCreate
    from app.services import activities, claims
    from app.timeutil import SHANGHAI

    village = (
        await session.execute(select(Village).where(col(Village.name) == HOME.name))
    ).scalar_one()
    if (
        await session.execute(select(col(Claim.id)).where(col(Claim.village_id) == village.id))
    ).first() is not None:
        return []
    today = clock.today()
    rule_set = await rules.rule_set_in_force(session, village.id, today)
    if rule_set is None:
        return []
    claimable = {
        item.code: item
        for item in (
            await session.execute(
                select(RuleItem).where(
                    col(RuleItem.rule_set_id) == rule_set.id, col(RuleItem.claimable)
                )
            )
        ).scalars()
    }
    volunteer, blood = claimable["3.1"], claimable["3.2"]

    async def staff(username: str, role: Role) -> Principal:
        person_id = (
            await session.execute(select(col(Person.id)).where(col(Person.username) == username))
        ).scalar_one()
        grant = Grant(role, village.town_id, village.id)
        return Principal(person_id=person_id, session_id=uuid.uuid4(), grants=(grant,))

    leader = await staff(f"{HOME.slug}-leader", Role.SCORING_LEADER)
    scorer = await staff(f"{HOME.slug}-scorer", Role.SCORER)
    admin = await staff(f"{HOME.slug}-admin", Role.VILLAGE_ADMIN)
    # Heads of households where none of the staff live (nobody reviews their own household).
    staff_ids = [leader.person_id, scorer.person_id, admin.person_id]
    staff_homes = select(col(HouseholdMember.household_id)).where(
        col(HouseholdMember.person_id).in_(staff_ids)
    )
    heads = (
        await session.execute(
            select(col(HouseholdMember.person_id), col(Household.id))
            .join(Household, col(Household.id) == col(HouseholdMember.household_id))
            .where(
                col(Household.village_id) == village.id,
                col(HouseholdMember.is_head),
                col(Household.participation) == Participation.ACTIVE,
                col(Household.id).not_in(staff_homes),
            )
            .order_by(col(Household.number))
            .limit(4)
        )
    ).all()

    def villager(person_id: uuid.UUID, household_id: uuid.UUID) -> Principal:
        return Principal(
            person_id=person_id,
            session_id=uuid.uuid4(),
            household_id=household_id,
            household_village_id=village.id,
        )

    earlier = max(date(today.year, 1, 1), today - timedelta(days=3))
    await claims.submit(
        session,
        villager(*heads[0]),
        ClaimCreate(rule_item_id=volunteer.id, activity_on=today, description="清扫村口道路落叶"),
    )
    approved = await claims.submit(
        session,
        villager(*heads[1]),
        ClaimCreate(rule_item_id=blood.id, activity_on=earlier, description="在镇卫生院无偿献血"),
    )
    await claims.review(session, leader, approved.id, ReviewCreate(decision=ReviewDecision.APPROVE))
    rejected = await claims.submit(
        session,
        villager(*heads[2]),
        ClaimCreate(rule_item_id=volunteer.id, activity_on=earlier, description="帮邻居搬家"),
    )
    await claims.review(
        session,
        leader,
        rejected.id,
        ReviewCreate(
            decision=ReviewDecision.REJECT, comment="邻里互助值得肯定，但不属于志愿服务项目"
        ),
    )
    await claims.submit_on_behalf(
        session,
        scorer,
        heads[3][1],
        ClaimCreate(rule_item_id=volunteer.id, activity_on=today, description="参加村里河道清理"),
    )
    tomorrow = datetime.combine(today + timedelta(days=1), datetime.min.time(), SHANGHAI)
    activity = await activities.create(
        session,
        admin,
        village.id,
        ActivityCreate(
            title="垃圾分类宣传志愿活动",
            place="村委会广场",
            starts_at=tomorrow + timedelta(hours=9),
            ends_at=tomorrow + timedelta(hours=11),
            rule_item_id=volunteer.id,
            places=10,
        ),
    )
    return [
        f"{HOME.name} claims: 2 pending (one recorded by the scorer), 1 approved, 1 rejected;"
        f" activity {activity.title} tomorrow 09:00-11:00, {activity.places} places"
    ]


DEMO_ITEMS = (
    ShopItemCreate(name="洗衣液 2kg", category="生活用品", price_points=10, stock=40),
    ShopItemCreate(name="垃圾分类桶", category="清洁用品", price_points=25, stock=12,
                   limit_per_period=1),
    ShopItemCreate(name="盆栽绿萝", category="花草果树", price_points=15, stock=20),
    ShopItemCreate(name="理发一次", category="服务", price_points=8),
)  # fmt: skip


async def _ensure_shop(session: AsyncSession) -> list[str]:
    """HOME's 积分超市 with a few items, its attendant scoped to it, a printed household card
    and an order waiting to be collected, all made through the shop's services."""
    village = (
        await session.execute(select(Village).where(col(Village.name) == HOME.name))
    ).scalar_one()
    if (
        await session.execute(select(col(Shop.id)).where(col(Shop.village_id) == village.id))
    ).first():
        return []
    admin = await _district_admin(session)
    shop = await shop_service.create_shop(
        session, admin, village.id, ShopCreate(name=f"{HOME.name}积分超市")
    )
    items = [await shop_service.create_item(session, admin, shop.id, item) for item in DEMO_ITEMS]
    await session.execute(
        update(RoleGrant)
        .where(
            col(RoleGrant.person_id).in_(
                select(col(Person.id)).where(col(Person.username) == SHOP_ATTENDANT)
            ),
            col(RoleGrant.role) == Role.SHOP_ATTENDANT,
        )
        .values(shop_id=shop.id)
    )
    lines = [f"{shop.name}: " + "、".join(f"{i.name} {i.price_points}分" for i in items)]
    card_holder = (
        await session.execute(
            select(Household)
            .where(col(Household.village_id) == village.id)
            .order_by(col(Household.number))
            .limit(1)
        )
    ).scalar_one()
    card = await shop_cards.issue_card(session, get_settings(), admin, card_holder.id)
    lines.append(f"household {card_holder.number} has a printed card (code {card.code})")
    villager = (
        await session.execute(
            select(col(Person.id), col(HouseholdMember.household_id))
            .join(WechatIdentity, col(WechatIdentity.person_id) == col(Person.id))
            .join(HouseholdMember, col(HouseholdMember.person_id) == col(Person.id))
            .where(col(WechatIdentity.openid) == DEMO_OPENID)
        )
    ).first()
    if villager is not None:
        resident = Principal(
            person_id=villager.id,
            session_id=uuid.uuid4(),
            household_id=villager.household_id,
            household_village_id=village.id,
        )
        try:
            async with session.begin_nested():
                order, _ = await shop_orders.place_order(
                    session,
                    resident,
                    shop.id,
                    OrderCreate(lines=[OrderLineCreate(item_id=items[0].id, quantity=1)]),
                )
            lines.append(
                f"the demo villager's order of {items[0].name} ({order.points}分) is waiting"
                " to be collected"
            )
        except AppError as refused:  # outside the policy's window, or too few points yet
            lines.append(f"the demo villager could not order today: {refused.code}")
    return lines


async def _fill(session: AsyncSession) -> DemoSummary | None:
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    created = False
    if (await session.execute(select(col(Town.id)).limit(1))).first() is None:
        await _seed(session, hash_password(DEMO_PASSWORD))
        created = True
    staff = await _staff_lines(session)
    if not staff:
        return None
    invite = await _issue_invite(session)
    rules = await _ensure_rules(session)
    history = await _ensure_history(session)
    history += await _ensure_claims(session)
    shop = await _ensure_shop(session)
    town = (await session.execute(select(col(Town.name)).order_by(col(Town.created_at)))).scalars()
    return DemoSummary(
        created=created,
        town="、".join(town),
        villages=await _count(session, Village),
        groups=await _count(session, VillageGroup),
        households=await _count(session, Household),
        members=await _count(session, HouseholdMember),
        staff=staff,
        villager=await _villager(session),
        unbound=invite[1] if invite else None,
        unbound_phone=invite[2] if invite else None,
        invite_code=invite[0] if invite else None,
        invite_expires=invite[3] if invite else None,
        rules=rules,
        history=history,
        shop=shop,
    )


async def seed_demo(url: str, *, base_url: str | None = None) -> None:
    """Fill an empty database with the demo town, then print how to log in as each role.

    `base_url` is where the API listens, for the printed commands; None means not known here.
    """
    engine = create_engine(url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            summary = await _fill(session)
    finally:
        await engine.dispose()
    if summary is None:
        print("The database already holds towns that are not the demo; nothing was added.")
        return
    print(_instructions(summary, base_url or DEFAULT_BASE_URL, default_url=base_url is None))


def _instructions(s: DemoSummary, base: str, *, default_url: bool) -> str:
    state = "created" if s.created else "already there"
    lines = [
        "",
        f"Demo data {state}: {s.town}, {s.villages} villages, {s.groups} village groups, "
        f"{s.households} households, {s.members} household members.",
        "Rules in force (each village on a different seed template):",
        *(f"  {line}" for line in s.rules),
        *(f"History: {line}" for line in s.history),
        *(f"Shop: {line}" for line in s.shop),
        "",
        f"Staff log in with a password; every demo account's password is {DEMO_PASSWORD}:",
    ]
    width = max(len(line.username) for line in s.staff)
    for line in s.staff:
        label = ROLE_LABELS[line.role]
        lines.append(f"  {label:<16} {line.username:<{width}}  {line.name} · {line.scope}")
    lines += [
        "",
        "Try it in a shell" + (" (the default address; use yours):" if default_url else ":"),
        f"  API={base}/api/v1; JSON='Content-Type: application/json'",
        "  pick() { python3 -c 'import json,sys; d=json.load(sys.stdin); "
        '[d:=d[k] for k in sys.argv[1:]]; print(d)\' "$@"; }',
        '  TOKEN=$(curl -s $API/auth/password/login -H "$JSON" \\',
        f'    -d \'{{"username": "{village_admin(HOME)}", '
        f'"password": "{DEMO_PASSWORD}"}}\' | pick access_token)',
        '  curl -s $API/me -H "Authorization: Bearer $TOKEN"',
    ]
    if s.villager:
        lines += [
            "",
            f"Villager {s.villager} is bound to WeChat openid {DEMO_OPENID}. The fake WeChat",
            "server takes js_code <openid>#<anything>, each code once (so change the number):",
            '  TOKEN=$(curl -s $API/auth/wechat/login -H "$JSON" \\',
            f'    -d \'{{"code": "{DEMO_OPENID}#1"}}\' | pick tokens access_token)',
            '  curl -s $API/me -H "Authorization: Bearer $TOKEN"',
            "The months published above queued subscribe messages to that openid; the app's",
            "notification worker sends them to the fake WeChat server: GET /__fake/sent there.",
        ]
    if s.unbound and s.invite_code and s.invite_expires:
        until = s.invite_expires.astimezone(UTC).strftime("%Y-%m-%d")
        lines += [
            "",
            f"Household member {s.unbound} has no WeChat yet: invite code {s.invite_code}",
            f"(valid until {until}; every start issues a new one). Log in with a new openid",
            "for a bind ticket, then bind:",
            '  TICKET=$(curl -s $API/auth/wechat/login -H "$JSON" \\',
            '    -d \'{"code": "new-phone#1"}\' | pick bind_ticket)',
            '  curl -s $API/auth/wechat/bind -H "$JSON" \\',
            f'    -d \'{{"bind_ticket": "\'$TICKET\'", "invite_code": "{s.invite_code}"}}\'',
        ]
        if s.unbound_phone:
            lines.append(f'  (or bind by phone: "phone_code": "phone:{s.unbound_phone}")')
    return "\n".join(lines) + "\n"
