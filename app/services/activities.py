"""Activities (志愿活动): announced by the village admin, checked into on site with a code that
changes every minute, and confirmed by the organiser, which posts the bonus as an approved
claim does."""

import base64
import hashlib
import hmac
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import STAFF_READ_ROLES, village_scope
from app.config import Settings
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.models import (
    Activity,
    ActivityCheckIn,
    ActivityStatus,
    Household,
    Participation,
    Role,
)
from app.pagination import PageParams, paginate
from app.schemas.activities import ActivityCreate, AttendanceConfirm, CheckInCode
from app.schemas.rules import VetoScope
from app.security import Principal
from app.services import audit, notifications
from app.services.claims import (
    claimable_item,
    decided_message,
    item_and_policy,
    points_detail,
    post_bonus,
)
from app.services.notifications import NotificationKind
from app.services.organisation import get_village, get_village_for_admin
from app.services.points_year import vetoed_in_year
from app.timeutil import SHANGHAI

CODE_WINDOW = timedelta(minutes=1)
# Anything outside these years is a typing slip; near year 1 or 9999 an offset pushes the
# time past what datetime can hold, and converting it to local time would overflow.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _window(at: datetime) -> int:
    return int(at.timestamp() // CODE_WINDOW.total_seconds())


def _code_for(settings: Settings, activity_id: uuid.UUID, window: int) -> str:
    # A key of its own, derived from the token secret, so a check-in code can never be
    # mistaken for (or help forge) anything else signed with it.
    key = hmac.new(settings.jwt_secret.encode(), b"activity-check-in", hashlib.sha256).digest()
    mac = hmac.new(key, f"{activity_id}:{window}".encode(), hashlib.sha256).digest()
    return base64.b32encode(mac[:10]).decode()


def check_in_code(settings: Settings, activity_id: uuid.UUID, at: datetime) -> CheckInCode:
    window = _window(at)
    return CheckInCode(
        code=_code_for(settings, activity_id, window),
        valid_until=datetime.fromtimestamp((window + 2) * CODE_WINDOW.total_seconds(), UTC),
    )


def code_is_valid(settings: Settings, activity_id: uuid.UUID, code: str, at: datetime) -> bool:
    """This minute's code or the previous one's: a scan made just before the minute turned
    still counts, an older photo of the code does not."""
    window = _window(at)
    # Compared as bytes: compare_digest refuses str with characters outside ASCII.
    given = code.upper().encode()
    return any(
        hmac.compare_digest(given, _code_for(settings, activity_id, w).encode())
        for w in (window, window - 1)
    )


def not_found() -> NotFound:
    return NotFound("No such activity.", code="activity.not_found")


async def create(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, data: ActivityCreate
) -> Activity:
    village = await get_village_for_admin(session, principal, village_id)
    if data.starts_at < EARLIEST or data.ends_at >= LATEST:
        raise Unprocessable(
            "The activity must take place between 2000 and 2099.",
            code="activity.date_out_of_range",
            title="活动时间不合理",
        )
    if data.ends_at <= data.starts_at:
        raise Unprocessable(
            "The activity must end after it starts.",
            code="activity.bad_window",
            title="活动结束时间须晚于开始时间",
        )
    if data.ends_at <= clock.now():
        raise Unprocessable(
            "The activity is already over.", code="activity.already_over", title="活动已结束"
        )
    item, _policy = await claimable_item(
        session, village.id, data.rule_item_id, data.starts_at.astimezone(SHANGHAI).date()
    )
    activity = Activity(
        village_id=village.id,
        title=data.title,
        place=data.place,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        rule_item_id=item.id,
        places=data.places,
        status=ActivityStatus.ANNOUNCED,
        organiser_id=principal.person_id,
    )
    session.add(activity)
    await session.flush()
    audit.record(
        session, principal, "activity.announce", "activity", activity.id,
        after=audit.snapshot(activity), village_id=village.id,
    )  # fmt: skip
    return activity


async def list_activities(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, params: PageParams
) -> tuple[list[Activity], str | None]:
    village = await get_village(session, principal, village_id)
    rows, cursor = await paginate(
        session,
        select(Activity).where(col(Activity.village_id) == village.id),
        order=[col(Activity.starts_at), col(Activity.id)],
        params=params,
        parse=[datetime.fromisoformat, uuid.UUID],
    )
    return [r[0] for r in rows], cursor


async def get_activity(
    session: AsyncSession,
    principal: Principal,
    activity_id: uuid.UUID,
    *,
    admin: bool = False,
    lock: bool = False,
) -> Activity:
    village = col(Activity.village_id)
    scope = (
        village_scope(principal, village, roles=(Role.VILLAGE_ADMIN,), towns=False)
        if admin
        else village_scope(principal, village, roles=STAFF_READ_ROLES, residents=True)
    )
    statement = select(Activity).where(col(Activity.id) == activity_id, scope)
    if lock:
        statement = statement.with_for_update()
    activity = (await session.execute(statement)).scalar_one_or_none()
    if activity is None:
        raise not_found()
    return activity


async def current_code(
    session: AsyncSession, principal: Principal, settings: Settings, activity_id: uuid.UUID
) -> CheckInCode:
    activity = await get_activity(session, principal, activity_id, admin=True)
    return check_in_code(settings, activity.id, clock.now())


async def check_in(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    activity_id: uuid.UUID,
    code: str,
    *,
    now: datetime | None = None,
) -> ActivityCheckIn:
    """One check-in per person; a place is taken in the same statement that checks one is
    left, so however many scan at once the places are never oversold."""
    now = now or clock.now()
    activity = (
        await session.execute(
            select(Activity).where(
                col(Activity.id) == activity_id,
                col(Activity.village_id) == principal.household_village_id,
            )
        )
    ).scalar_one_or_none()
    if activity is None or principal.household_id is None:
        raise not_found()
    if activity.status is not ActivityStatus.ANNOUNCED:
        raise closed()
    if not activity.starts_at <= now <= activity.ends_at:
        raise Conflict(
            "Check-in works only while the activity takes place.",
            code="activity.not_open",
            title="不在活动时间内，不能签到",
        )
    if not code_is_valid(settings, activity.id, code, now):
        raise Unprocessable(
            "The code is not this activity's current one; scan it again.",
            code="activity.code_invalid",
            title="签到码无效或已过期，请重新扫码",
        )
    household = await session.get(Household, principal.household_id)
    assert household is not None
    if household.participation is not Participation.ACTIVE:
        raise Conflict(
            "The household does not take part in the points scheme.",
            code="activity.household_not_participating",
            title="本户未参加积分制",
        )
    _item, policy = await item_and_policy(session, activity.rule_item_id)
    if policy.veto_scope is VetoScope.YEAR and await vetoed_in_year(
        session, activity.village_id, [household.id], _year_of(activity)
    ):
        raise Conflict(
            "The household was vetoed (一票否决) for the year.",
            code="activity.household_vetoed",
            title="本户本年度已被一票否决，不能参加积分活动",
        )
    already = await session.execute(
        select(col(ActivityCheckIn.id)).where(
            col(ActivityCheckIn.activity_id) == activity.id,
            col(ActivityCheckIn.person_id) == principal.person_id,
        )
    )
    if already.first() is not None:
        raise already_checked_in()
    # The status read above took no lock: attendance may be confirmed before this UPDATE gets
    # the row, so the UPDATE checks it again on the row it locks.
    taken = await session.execute(
        update(Activity)
        .where(
            col(Activity.id) == activity.id,
            col(Activity.status) == ActivityStatus.ANNOUNCED,
            col(Activity.taken) < col(Activity.places),
        )
        .values(taken=col(Activity.taken) + 1)
        .returning(col(Activity.taken))
    )
    if taken.first() is None:
        status = (
            await session.execute(
                select(col(Activity.status)).where(col(Activity.id) == activity.id)
            )
        ).scalar_one()
        if status is not ActivityStatus.ANNOUNCED:
            raise closed()
        raise Conflict("Every place is taken.", code="activity.full", title="名额已满")
    row = ActivityCheckIn(
        activity_id=activity.id,
        village_id=activity.village_id,
        person_id=principal.person_id,
        household_id=household.id,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        # The same person scanning twice at once: the unique (activity, person) kept one, and
        # this request's place is given back with its rollback.
        raise already_checked_in() from exc
    return row


def _year_of(activity: Activity) -> int:
    return activity.starts_at.astimezone(SHANGHAI).year


def closed() -> Conflict:
    return Conflict(
        "Attendance was already confirmed.", code="activity.closed", title="活动签到已结束"
    )


def already_checked_in() -> Conflict:
    return Conflict(
        "You already checked in to this activity.",
        code="activity.already_checked_in",
        title="您已签到",
    )


async def list_check_ins(
    session: AsyncSession, principal: Principal, activity_id: uuid.UUID
) -> list[ActivityCheckIn]:
    activity = await get_activity(session, principal, activity_id, admin=True)
    rows = await session.execute(
        select(ActivityCheckIn)
        .where(col(ActivityCheckIn.activity_id) == activity.id)
        .order_by(col(ActivityCheckIn.created_at), col(ActivityCheckIn.id))
    )
    return list(rows.scalars())


async def confirm_attendance(
    session: AsyncSession, principal: Principal, activity_id: uuid.UUID, data: AttendanceConfirm
) -> tuple[Activity, int, int]:
    """The organiser's attendance list: each attending household gets the item's bonus once
    (several members checking in earn it once), capped per period as a claim's is.

    Returns the activity, the households awarded, and the points posted.
    """
    activity = await get_activity(session, principal, activity_id, admin=True, lock=True)
    if activity.status is not ActivityStatus.ANNOUNCED:
        raise Conflict(
            "Attendance was already confirmed.",
            code="activity.already_confirmed",
            title="该活动已确认过签到名单",
        )
    now = clock.now()
    if now < activity.starts_at:
        raise Conflict(
            "The activity has not started yet.",
            code="activity.not_started",
            title="活动尚未开始",
        )
    check_ins = {
        c.id: c
        for c in (
            await session.execute(
                select(ActivityCheckIn).where(col(ActivityCheckIn.activity_id) == activity.id)
            )
        ).scalars()
    }
    attended = set(data.attended_check_in_ids)
    if attended - check_ins.keys():
        raise Unprocessable(
            "Only check-ins of this activity can be confirmed.",
            code="activity.unknown_check_in",
            title="签到记录不属于该活动",
        )
    households = sorted({check_ins[c].household_id for c in attended})
    if principal.household_id in households:
        raise Forbidden(
            "Nobody confirms attendance for their own household.",
            code="activity.own_household",
            title="不能为本户确认签到",
        )
    for check_in_row in check_ins.values():
        check_in_row.attended = check_in_row.id in attended
    # The row is locked and was announced when read: no other confirmation can come between.
    activity.status = ActivityStatus.CONFIRMED
    activity.confirmed_at = now
    activity.confirmed_by = principal.person_id
    item, policy = await item_and_policy(session, activity.rule_item_id)
    # Attendance is recorded as it was, but a household that left the scheme or was vetoed
    # for the year since it checked in earns nothing, as its claim would not.
    left = set(
        (
            await session.execute(
                select(col(Household.id)).where(
                    col(Household.id).in_(households),
                    col(Household.participation) != Participation.ACTIVE,
                )
            )
        ).scalars()
    )
    vetoed = (
        await vetoed_in_year(session, activity.village_id, households, _year_of(activity))
        if policy.veto_scope is VetoScope.YEAR
        else set()
    )
    awarded: dict[uuid.UUID, int] = {}
    for household_id in households:
        if household_id in left | vetoed:
            continue
        award = await post_bonus(
            session,
            village_id=activity.village_id,
            household_id=household_id,
            item=item,
            policy=policy,
            activity_on=activity.starts_at.astimezone(SHANGHAI).date(),
            source_type="activity",
            source_id=activity.id,
            actor_id=principal.person_id,
            memo=f"志愿活动：{activity.title}",
        )
        awarded[household_id] = award.points
    posted = sum(awarded.values())
    # Everyone who checked in learns the outcome, as a claimant would; the few distinct
    # outcomes are queued one statement each.
    told: dict[tuple[bool, str], list[uuid.UUID]] = defaultdict(list)
    for check_in_row in check_ins.values():
        came = check_in_row.id in attended
        if not came:
            detail = "未确认到场"
        elif check_in_row.household_id in awarded:
            detail = points_detail(awarded[check_in_row.household_id])
        else:
            detail = "本户本年度不计积分"
        told[came, detail].append(check_in_row.person_id)
    for (came, detail), person_ids in told.items():
        await notifications.notify_people(
            session,
            village_id=activity.village_id,
            person_ids=person_ids,
            kind=NotificationKind.CLAIM_DECIDED,
            data=decided_message(activity.title, came, detail, now),
        )
    audit.record(
        session, principal, "activity.confirm", "activity", activity.id,
        after={
            "attended": [str(c) for c in sorted(attended)],
            "points": posted,
            "not_awarded": [str(h) for h in sorted(left | vetoed)],
        },
        village_id=activity.village_id,
    )  # fmt: skip
    return activity, len(awarded), posted
