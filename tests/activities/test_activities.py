"""Activities: announced, checked into with a rotating code inside the time window, once per
person, and confirmed by the organiser, which posts the bonus once per household."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import (
    Activity,
    ActivityCheckIn,
    Household,
    HouseholdPeriodScore,
    Participation,
    PeriodKind,
    PeriodStatus,
    Role,
    ScoringPeriod,
)
from app.schemas.rules import ClaimPolicy, Policy, VetoScope
from app.services.activities import code_is_valid
from tests import factories as f
from tests.activities.conftest import activity_body, announce, check_in, code_now, villager_of
from tests.auth.conftest import assert_problem
from tests.claims.conftest import API, TODAY, Scene, bonus_entries, build_scene


async def check_in_count(db: AsyncSession) -> int:
    return (await db.execute(select(func.count()).select_from(ActivityCheckIn))).scalar_one()


async def test_announce_check_in_and_confirm_posts_the_bonus_once_per_household(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    activity = await announce(client, scene)
    assert (activity["status"], activity["taken"], activity["places"]) == ("announced", 0, 3)
    code = (await client.get(f"{API}/activities/{activity['id']}/code", headers=scene.admin)).json()
    assert code_is_valid(settings, uuid.UUID(activity["id"]), code["code"], datetime.now(UTC))

    first = await check_in(client, scene.villager, activity, code["code"])
    assert first.status_code == 201, first.text
    # A second member of the same household checks in too; the household earns it once.
    member = await f.add_member(db, scene.household)
    person = await db.get(f.Person, member.person_id)
    assert person is not None
    second = await check_in(
        client, await f.login_headers(db, settings, person), activity, code["code"]
    )
    assert second.status_code == 201
    household, neighbour = await villager_of(db, settings, scene)
    absent = await check_in(client, neighbour, activity, code["code"])
    assert absent.status_code == 201

    listed = await client.get(f"{API}/activities/{activity['id']}", headers=scene.villager)
    assert listed.json()["taken"] == 3

    confirmed = await client.post(
        f"{API}/activities/{activity['id']}/attendance",
        headers=scene.admin,
        json={"attended_check_in_ids": [first.json()["id"], second.json()["id"]]},
    )
    assert confirmed.status_code == 200, confirmed.text
    body = confirmed.json()
    assert body["activity"]["status"] == "confirmed"
    assert (body["households_awarded"], body["points_posted"]) == (1, 2)
    [entry] = await bonus_entries(db, scene.household)
    assert (entry.points, entry.source_type, str(entry.source_id)) == (
        2,
        "activity",
        activity["id"],
    )
    assert await bonus_entries(db, household) == []
    rows = (
        await client.get(f"{API}/activities/{activity['id']}/check-ins", headers=scene.admin)
    ).json()
    assert sorted(r["attended"] for r in rows) == [False, True, True]

    again = await client.post(
        f"{API}/activities/{activity['id']}/attendance",
        headers=scene.admin,
        json={"attended_check_in_ids": [absent.json()["id"]]},
    )
    assert_problem(again, 409, "activity.already_confirmed")
    assert await bonus_entries(db, household) == []
    late = await check_in(client, neighbour, activity, code_now(settings, activity))
    assert_problem(late, 409, "activity.closed")


async def test_one_check_in_per_person(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    activity = await announce(client, scene)
    code = code_now(settings, activity)
    assert (await check_in(client, scene.villager, activity, code)).status_code == 201
    again = await check_in(client, scene.villager, activity, code)
    assert_problem(again, 409, "activity.already_checked_in")
    stored = await db.get(Activity, uuid.UUID(activity["id"]))
    assert stored is not None
    assert stored.taken == 1
    assert await check_in_count(db) == 1


async def test_places_run_out(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    activity = await announce(client, scene, places=1)
    code = code_now(settings, activity)
    assert (await check_in(client, scene.villager, activity, code)).status_code == 201
    _, neighbour = await villager_of(db, settings, scene)
    full = await check_in(client, neighbour, activity, code)
    assert_problem(full, 409, "activity.full")
    assert await check_in_count(db) == 1


async def test_the_code_rotates_every_minute(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    activity = await announce(client, scene)
    activity_id = uuid.UUID(activity["id"])
    now = datetime.now(UTC)
    assert code_is_valid(settings, activity_id, code_now(settings, activity, minutes=-1), now)
    assert not code_is_valid(settings, activity_id, code_now(settings, activity, minutes=-2), now)
    assert not code_is_valid(settings, activity_id, code_now(settings, activity, minutes=1), now)
    stale = await check_in(
        client, scene.villager, activity, code_now(settings, activity, minutes=-3)
    )
    assert_problem(stale, 422, "activity.code_invalid")
    other = await announce(client, scene)
    borrowed = await check_in(client, scene.villager, activity, code_now(settings, other))
    assert_problem(borrowed, 422, "activity.code_invalid")
    chinese = await check_in(client, scene.villager, activity, "签到码")
    assert_problem(chinese, 422, "activity.code_invalid")
    assert await check_in_count(db) == 0


async def test_check_in_works_only_inside_the_time_window(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    activity = await announce(
        client,
        scene,
        starts_at=later.isoformat(),
        ends_at=(later + timedelta(hours=1)).isoformat(),
    )
    response = await check_in(client, scene.villager, activity, code_now(settings, activity))
    assert_problem(response, 409, "activity.not_open")
    assert await check_in_count(db) == 0
    stored = await db.get(Activity, uuid.UUID(activity["id"]))
    assert stored is not None
    assert stored.taken == 0
    early = await client.post(
        f"{API}/activities/{activity['id']}/attendance",
        headers=scene.admin,
        json={"attended_check_in_ids": []},
    )
    assert_problem(early, 409, "activity.not_started")


async def test_only_villagers_of_the_village_check_in(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    other = await build_scene(db, settings)
    activity = await announce(client, scene)
    code = code_now(settings, activity)
    for headers in (other.villager, scene.admin):
        assert_problem(await check_in(client, headers, activity, code), 404, "activity.not_found")
    assert await check_in_count(db) == 0


async def test_announcing_is_checked(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    url = f"{API}/villages/{scene.village.id}/activities"
    now = datetime.now(UTC)
    cases = [
        ({"ends_at": (now - timedelta(hours=2)).isoformat()}, "activity.bad_window"),
        (
            {
                "starts_at": (now - timedelta(hours=3)).isoformat(),
                "ends_at": (now - timedelta(hours=2)).isoformat(),
            },
            "activity.already_over",
        ),
        ({"rule_item_id": str(scene.items.honour.id)}, "claim.item_not_claimable"),
        # Local time of these would overflow datetime; they were a 500.
        ({"starts_at": "0001-01-01T00:00:00+14:00"}, "activity.date_out_of_range"),
        ({"ends_at": "9999-12-31T23:59:59-14:00"}, "activity.date_out_of_range"),
    ]
    for overrides, code in cases:
        response = await client.post(
            url, headers=scene.admin, json=activity_body(scene, **overrides)
        )
        assert_problem(response, 422, code)
    assert (await db.execute(select(func.count()).select_from(Activity))).scalar_one() == 0
    scorer = await client.post(url, headers=scene.scorers[0], json=activity_body(scene))
    assert_problem(scorer, 403, "auth.forbidden")


async def test_nobody_confirms_their_own_household(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    admin_home = await f.create_household(db, scene.village, scene.group)
    member = await f.add_member(db, admin_home)
    person = await db.get(f.Person, member.person_id)
    assert person is not None
    await f.grant(db, person, Role.VILLAGE_ADMIN, village=scene.village)
    admin_headers = await f.login_headers(db, settings, person)
    activity = await announce(client, scene)
    mine = await check_in(client, admin_headers, activity, code_now(settings, activity))
    assert mine.status_code == 201
    response = await client.post(
        f"{API}/activities/{activity['id']}/attendance",
        headers=admin_headers,
        json={"attended_check_in_ids": [mine.json()["id"]]},
    )
    assert_problem(response, 403, "activity.own_household")
    assert await bonus_entries(db, admin_home) == []
    stored = await db.get(Activity, uuid.UUID(activity["id"]))
    assert stored is not None
    assert stored.status == "announced"


async def test_a_check_in_of_another_activity_cannot_be_confirmed(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    first = await announce(client, scene)
    second = await announce(client, scene)
    row = await check_in(client, scene.villager, second, code_now(settings, second))
    response = await client.post(
        f"{API}/activities/{first['id']}/attendance",
        headers=scene.admin,
        json={"attended_check_in_ids": [row.json()["id"]]},
    )
    assert_problem(response, 422, "activity.unknown_check_in")
    assert await bonus_entries(db, scene.household) == []


async def veto_for_the_year(db: AsyncSession, scene: Scene, household: Household) -> None:
    """A published January in which the household was vetoed (一票否决)."""
    period = ScoringPeriod(
        village_id=scene.village.id,
        town_id=scene.village.town_id,
        rule_set_id=scene.items.volunteer.rule_set_id,
        year=TODAY.year,
        kind=PeriodKind.MONTH,
        number=1,
        starts_on=TODAY.replace(month=1, day=1),
        ends_on=TODAY.replace(month=1, day=31),
        status=PeriodStatus.PUBLISHED,
    )
    db.add(period)
    await db.flush()
    db.add(
        HouseholdPeriodScore(
            household_id=household.id,
            period_id=period.id,
            village_id=scene.village.id,
            score=0,
            vetoed=True,
        )
    )
    await db.flush()


async def year_veto_scene(db: AsyncSession, settings: Settings) -> Scene:
    policy = Policy(veto_scope=VetoScope.YEAR, claims=ClaimPolicy(review_quorum=2))
    return await build_scene(db, settings, policy=policy)


async def test_a_household_vetoed_for_the_year_cannot_check_in(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await year_veto_scene(db, settings)
    await veto_for_the_year(db, scene, scene.household)
    activity = await announce(client, scene)
    response = await check_in(client, scene.villager, activity, code_now(settings, activity))
    assert_problem(response, 409, "activity.household_vetoed")
    assert await check_in_count(db) == 0
    stored = await db.get(Activity, uuid.UUID(activity["id"]))
    assert stored is not None
    assert stored.taken == 0


async def test_a_period_veto_does_not_bar_check_in(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    await veto_for_the_year(db, scene, scene.household)
    activity = await announce(client, scene)
    response = await check_in(client, scene.villager, activity, code_now(settings, activity))
    assert response.status_code == 201, response.text


async def test_confirmation_awards_nothing_to_households_vetoed_or_gone_since_check_in(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await year_veto_scene(db, settings)
    activity = await announce(client, scene)
    code = code_now(settings, activity)
    vetoed, vetoed_headers = await villager_of(db, settings, scene)
    gone, gone_headers = await villager_of(db, settings, scene)
    rows = [
        (await check_in(client, headers, activity, code)).json()["id"]
        for headers in (scene.villager, vetoed_headers, gone_headers)
    ]
    await veto_for_the_year(db, scene, vetoed)
    gone.participation = Participation.LEFT
    await db.flush()
    confirmed = await client.post(
        f"{API}/activities/{activity['id']}/attendance",
        headers=scene.admin,
        json={"attended_check_in_ids": rows},
    )
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["households_awarded"], confirmed.json()["points_posted"]) == (1, 2)
    assert len(await bonus_entries(db, scene.household)) == 1
    assert await bonus_entries(db, vetoed) == []
    assert await bonus_entries(db, gone) == []
    listed = (
        await client.get(f"{API}/activities/{activity['id']}/check-ins", headers=scene.admin)
    ).json()
    assert [r["attended"] for r in listed] == [True, True, True]
