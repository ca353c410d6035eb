"""Claims from submission through review to the ledger, and every refusal with nothing written."""

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import (
    AuditEntry,
    BonusAward,
    Claim,
    ClaimReview,
    ClaimStatus,
    HouseholdBalance,
    HouseholdPeriodScore,
    Participation,
    PeriodKind,
    PeriodStatus,
    Photo,
    Role,
    ScoringPeriod,
    YearEndClose,
)
from app.schemas.rules import ClaimPolicy, Policy, VetoScope
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.claims.conftest import (
    API,
    TODAY,
    Scene,
    bonus_entries,
    build_scene,
    claim_body,
    claim_count,
    review,
    submit,
)
from tests.photos import images
from tests.photos.conftest import upload


async def balance(db: AsyncSession, scene: Scene) -> int:
    row = await db.get(HouseholdBalance, scene.household.id)
    return row.balance if row else 0


async def test_a_claim_walks_from_submission_through_quorum_to_the_ledger(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    photo = (await upload(client, scene.villager, images.jpeg(gps=True))).json()
    submitted = await submit(client, scene.villager, scene.items.volunteer, photo_ids=[photo["id"]])
    assert submitted.status_code == 201, submitted.text
    claim = submitted.json()
    assert claim["status"] == "pending"
    assert claim["on_behalf"] is False
    assert claim["photo_ids"] == [photo["id"]]
    assert claim["thumbnail_urls"] == [f"/api/v1/photos/{photo['id']}?thumbnail=true"]
    # The photo is evidence now: the scorers see it, and the cleanup job leaves it alone.
    seen = await client.get(claim["thumbnail_urls"][0], headers=scene.scorers[0])
    assert seen.status_code == 200
    assert seen.headers["content-type"] == "image/jpeg"

    first = await review(client, scene.scorers[0], claim["id"], comment="属实")
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "pending"
    assert await bonus_entries(db, scene.household) == []

    second = await review(client, scene.scorers[1], claim["id"])
    assert second.status_code == 200
    decided = second.json()
    assert decided["status"] == "approved"
    assert decided["points_awarded"] == 2
    assert [r["decision"] for r in decided["reviews"]] == ["approve", "approve"]
    [entry] = await bonus_entries(db, scene.household)
    assert (entry.points, entry.counts_score, entry.counts_balance) == (2, True, True)
    assert (entry.source_type, str(entry.source_id)) == ("claim", claim["id"])
    assert entry.rule_item_id == scene.items.volunteer.id
    assert entry.item_title == "参加志愿服务"
    assert entry.year == TODAY.year
    assert await balance(db, scene) == 2
    stored = await db.get(Claim, uuid.UUID(claim["id"]))
    assert stored is not None
    assert stored.ledger_entry_id == entry.id
    audits = await db.execute(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "claim.decide")
    )
    assert audits.scalar_one() == 1

    # Decided: nobody reviews it again, and nothing more is posted.
    late = await review(client, scene.scorers[2], claim["id"])
    assert_problem(late, 409, "claim.already_decided")
    assert len(await bonus_entries(db, scene.household)) == 1


async def test_the_leader_decides_alone_where_the_policy_says_so(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    response = await review(client, scene.leader, claim["id"], "reject", "当天未见参加")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "rejected"
    assert body["decision_reason"] == "当天未见参加"
    assert body["reviews"][0]["as_leader"] is True
    assert await bonus_entries(db, scene.household) == []
    # The villager sees the reason in their own list.
    mine = await client.get(f"{API}/households/{scene.household.id}/claims", headers=scene.villager)
    [listed] = mine.json()["items"]
    assert (listed["status"], listed["decision_reason"]) == ("rejected", "当天未见参加")


async def test_a_leader_is_one_vote_where_the_policy_wants_the_quorum(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await build_scene(
        db,
        settings,
        policy=Policy(claims=ClaimPolicy(review_quorum=2, leader_decides_alone=False)),
    )
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    first = await review(client, scene.leader, claim["id"])
    assert first.json()["status"] == "pending"
    second = await review(client, scene.scorers[0], claim["id"])
    assert second.json()["status"] == "approved"


async def test_rejections_reaching_the_quorum_reject(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    await review(client, scene.scorers[0], claim["id"], "approve")
    await review(client, scene.scorers[1], claim["id"], "reject", "照片不是本户")
    third = await review(client, scene.scorers[2], claim["id"], "reject", "重复申报")
    assert third.json()["status"] == "rejected"
    assert await bonus_entries(db, scene.household) == []


async def test_a_rejection_needs_a_reason(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    response = await review(client, scene.scorers[0], claim["id"], "reject", "   ")
    assert_problem(response, 422, "claim.reason_required")
    count = await db.execute(select(func.count()).select_from(ClaimReview))
    assert count.scalar_one() == 0


async def test_one_review_per_reviewer(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    await review(client, scene.scorers[0], claim["id"])
    again = await review(client, scene.scorers[0], claim["id"])
    assert_problem(again, 409, "claim.already_reviewed")
    stored = await db.get(Claim, uuid.UUID(claim["id"]))
    assert stored is not None
    assert stored.status is ClaimStatus.PENDING


async def test_nobody_reviews_or_records_for_their_own_household(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    refused = await review(client, scene.scorer_at_home, claim["id"])
    assert_problem(refused, 403, "claim.own_household")
    on_behalf = await client.post(
        f"{API}/households/{scene.household.id}/claims",
        headers=scene.scorer_at_home,
        json=claim_body(scene.items.blood, photo_ids=[]),
    )
    assert_problem(on_behalf, 403, "claim.own_household")
    assert (await db.execute(select(func.count()).select_from(ClaimReview))).scalar_one() == 0
    assert await claim_count(db) == 1
    queue = await client.get(
        f"{API}/villages/{scene.village.id}/claim-queue", headers=scene.scorer_at_home
    )
    assert queue.json()["items"] == []


async def test_a_scorer_records_a_claim_on_a_villagers_behalf(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    photo = (await upload(client, scene.scorers[0], images.png())).json()
    response = await client.post(
        f"{API}/households/{scene.household.id}/claims",
        headers=scene.scorers[0],
        json=claim_body(scene.items.blood, photo_ids=[photo["id"]]),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["on_behalf"] is True
    assert body["submitted_by"] != str(scene.villager_person.id)
    assert body["photo_ids"] == [photo["id"]]
    # The household sees it among its own claims, photo included.
    seen = await client.get(f"{API}/photos/{photo['id']}", headers=scene.villager)
    assert seen.status_code == 200


async def test_an_admin_of_another_village_cannot_record_on_behalf(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    other = await build_scene(db, settings)
    response = await client.post(
        f"{API}/households/{scene.household.id}/claims",
        headers=other.scorers[0],
        json=claim_body(scene.items.volunteer),
    )
    assert_problem(response, 404, "household.not_found")


async def test_the_villager_withdraws_a_pending_claim(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    response = await client.post(f"{API}/claims/{claim['id']}/withdraw", headers=scene.villager)
    assert response.status_code == 200
    assert response.json()["status"] == "withdrawn"
    again = await client.post(f"{API}/claims/{claim['id']}/withdraw", headers=scene.villager)
    assert_problem(again, 409, "claim.already_decided")
    late = await review(client, scene.scorers[0], claim["id"])
    assert_problem(late, 409, "claim.already_decided")
    # Withdrawn, it may be claimed again.
    assert (await submit(client, scene.villager, scene.items.volunteer)).status_code == 201


async def test_only_the_household_withdraws(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    response = await client.post(f"{API}/claims/{claim['id']}/withdraw", headers=scene.scorers[0])
    assert_problem(response, 404, "claim.not_found")
    stored = await db.get(Claim, uuid.UUID(claim["id"]))
    assert stored is not None
    assert stored.status is ClaimStatus.PENDING


async def test_a_decided_claim_cannot_be_withdrawn(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    await review(client, scene.leader, claim["id"])
    response = await client.post(f"{API}/claims/{claim['id']}/withdraw", headers=scene.villager)
    assert_problem(response, 409, "claim.already_decided")
    assert len(await bonus_entries(db, scene.household)) == 1


async def awarded_already(db: AsyncSession, scene: Scene, points: int) -> None:
    """An earlier award this month for the volunteer item (cap 4), as an attendance would."""
    item = scene.items.volunteer
    db.add(
        BonusAward(
            village_id=scene.village.id,
            household_id=scene.household.id,
            rule_item_id=item.id,
            item_lineage_id=item.lineage_id,
            activity_on=TODAY,
            cap_starts_on=TODAY.replace(day=1),
            points=points,
            source_type="activity",
            source_id=uuid.uuid4(),
        )
    )
    await db.flush()


@pytest.mark.parametrize(("earlier", "awarded"), [(0, 2), (3, 1)])
async def test_the_cap_holds_at_approval(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene, earlier: int, awarded: int
) -> None:
    """Cap 4 a month, 2 points a claim: with 3 already awarded, an approval brings 1."""
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    await awarded_already(db, scene, earlier)
    decided = (await review(client, scene.leader, claim["id"])).json()
    assert (decided["status"], decided["points_awarded"]) == ("approved", awarded)
    assert [e.points for e in await bonus_entries(db, scene.household)] == [awarded]
    assert await balance(db, scene) == awarded


async def test_an_approval_with_the_cap_used_up_posts_nothing(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    await awarded_already(db, scene, 4)
    decided = (await review(client, scene.leader, claim["id"])).json()
    assert (decided["status"], decided["points_awarded"]) == ("approved", 0)
    assert await bonus_entries(db, scene.household) == []


async def test_a_claim_over_the_cap_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await awarded_already(db, scene, 4)
    response = await submit(client, scene.villager, scene.items.volunteer)
    assert_problem(response, 409, "claim.over_cap")
    assert await claim_count(db) == 0


async def test_an_idempotency_key_writes_once(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    headers = {**scene.villager, "Idempotency-Key": str(uuid.uuid4())}
    body = claim_body(scene.items.volunteer)
    first = await client.post(f"{API}/claims", headers=headers, json=body)
    second = await client.post(f"{API}/claims", headers=headers, json=body)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert await claim_count(db) == 1


# Refusals: each with its problem code, and nothing written (no claim, photo still free).

REFUSALS = [
    "inspection_item",
    "not_claimable",
    "unknown_item",
    "future",
    "closed_year",
    "duplicate",
    "vetoed",
    "not_participating",
    "photos_required",
    "someone_elses_photo",
    "photo_already_used",
]


@pytest.mark.parametrize("case", REFUSALS)
async def test_refusals_write_nothing(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, case: str
) -> None:
    policy = Policy(veto_scope=VetoScope.YEAR, claims=ClaimPolicy(review_quorum=2))
    scene = await build_scene(db, settings, policy=policy)
    photo = (await upload(client, scene.villager, images.jpeg())).json()
    body = claim_body(scene.items.volunteer, photo_ids=[photo["id"]])
    expected: tuple[int, str]
    if case == "inspection_item":
        body["rule_item_id"] = str(scene.items.inspection.id)
        expected = (422, "claim.item_not_claimable")
    elif case == "not_claimable":
        body["rule_item_id"] = str(scene.items.honour.id)
        expected = (422, "claim.item_not_claimable")
    elif case == "unknown_item":
        other = await build_scene(db, settings)
        body["rule_item_id"] = str(other.items.volunteer.id)
        expected = (422, "claim.item_not_claimable")
    elif case == "future":
        body["activity_on"] = (TODAY + timedelta(days=1)).isoformat()
        expected = (422, "claim.date_in_future")
    elif case == "closed_year":
        db.add(
            YearEndClose(
                village_id=scene.village.id,
                year=TODAY.year,
                carried_over=True,
                households_expired=0,
                points_expired=0,
            )
        )
        await db.flush()
        expected = (409, "claim.year_closed")
    elif case == "duplicate":
        first = await client.post(
            f"{API}/claims", headers=scene.villager, json=claim_body(scene.items.volunteer)
        )
        assert first.status_code == 201
        expected = (409, "claim.duplicate")
    elif case == "vetoed":
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
                household_id=scene.household.id,
                period_id=period.id,
                village_id=scene.village.id,
                score=0,
                vetoed=True,
            )
        )
        await db.flush()
        expected = (409, "claim.household_vetoed")
    elif case == "not_participating":
        scene.household.participation = Participation.SUSPENDED
        await db.flush()
        expected = (409, "claim.household_not_participating")
    elif case == "photos_required":
        body = claim_body(scene.items.blood)
        expected = (422, "claim.photos_required")
    elif case == "someone_elses_photo":
        theirs = (await upload(client, scene.scorers[0], images.png())).json()
        body["photo_ids"] = [photo["id"], theirs["id"]]
        expected = (422, "claim.photo_unavailable")
    else:
        used = await client.post(
            f"{API}/claims",
            headers=scene.villager,
            json=claim_body(scene.items.blood, photo_ids=[photo["id"]]),
        )
        assert used.status_code == 201
        expected = (422, "claim.photo_unavailable")
    claims_before = await claim_count(db)
    attached_before = (
        await db.execute(
            select(func.count()).select_from(Photo).where(col(Photo.claim_id).is_not(None))
        )
    ).scalar_one()
    response = await client.post(f"{API}/claims", headers=scene.villager, json=body)
    assert_problem(response, *expected)
    assert await claim_count(db) == claims_before
    attached_after = (
        await db.execute(
            select(func.count()).select_from(Photo).where(col(Photo.claim_id).is_not(None))
        )
    ).scalar_one()
    assert attached_after == attached_before
    assert await bonus_entries(db, scene.household) == []


async def test_a_caller_without_a_household_cannot_claim(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    response = await submit(client, scene.admin, scene.items.volunteer)
    assert_problem(response, 403, "claim.no_household")
    assert await claim_count(db) == 0


async def test_more_than_nine_photos_is_malformed(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(10)]
    response = await submit(client, scene.villager, scene.items.volunteer, photo_ids=ids)
    assert_problem(response, 422, "request.invalid")


# Lists


async def test_the_review_queue_is_oldest_first_and_filtered(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    other_group = await f.create_group(db, scene.village)
    neighbour = await f.create_household(db, scene.village, other_group)
    member = await f.add_member(db, neighbour)
    person = await db.get(f.Person, member.person_id)
    assert person is not None
    neighbour_headers = await f.login_headers(db, settings, person)
    first = (await submit(client, scene.villager, scene.items.volunteer)).json()
    photo = (await upload(client, neighbour_headers, images.jpeg())).json()
    second = (
        await submit(client, neighbour_headers, scene.items.blood, photo_ids=[photo["id"]])
    ).json()
    url = f"{API}/villages/{scene.village.id}/claim-queue"
    queue = (await client.get(url, headers=scene.scorers[0])).json()["items"]
    assert [c["id"] for c in queue] == [first["id"], second["id"]]
    assert queue[1]["thumbnail_urls"] == [f"/api/v1/photos/{photo['id']}?thumbnail=true"]
    by_group = await client.get(
        url, headers=scene.scorers[0], params={"group_id": str(other_group.id)}
    )
    assert [c["id"] for c in by_group.json()["items"]] == [second["id"]]
    by_item = await client.get(
        url, headers=scene.scorers[0], params={"item_id": str(scene.items.volunteer.id)}
    )
    assert [c["id"] for c in by_item.json()["items"]] == [first["id"]]
    # Reviewed by this scorer: off their queue, still on the others'.
    await review(client, scene.scorers[0], first["id"])
    mine = (await client.get(url, headers=scene.scorers[0])).json()["items"]
    assert [c["id"] for c in mine] == [second["id"]]
    theirs = (await client.get(url, headers=scene.scorers[1])).json()["items"]
    assert len(theirs) == 2
    # The household at home is never on its own scorer's queue.
    at_home = (await client.get(url, headers=scene.scorer_at_home)).json()["items"]
    assert [c["id"] for c in at_home] == [second["id"]]


async def test_the_village_overview_shows_ages(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    stored = await db.get(Claim, uuid.UUID(claim["id"]))
    assert stored is not None
    stored.created_at -= timedelta(days=3)
    await db.flush()
    response = await client.get(
        f"{API}/villages/{scene.village.id}/claims",
        headers=scene.admin,
        params={"status": "pending"},
    )
    [row] = response.json()["items"]
    assert row["age_days"] == 3
    none = await client.get(
        f"{API}/villages/{scene.village.id}/claims",
        headers=scene.admin,
        params={"status": "approved"},
    )
    assert none.json()["items"] == []


async def test_claims_of_other_villages_are_not_found(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    other = await build_scene(db, settings)
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    for headers in (other.scorers[0], other.admin, other.villager, other.leader):
        response = await client.get(f"{API}/claims/{claim['id']}", headers=headers)
        assert_problem(response, 404, "claim.not_found")
    response = await review(client, other.leader, claim["id"])
    assert_problem(response, 404, "claim.not_found")
    queue = await client.get(
        f"{API}/villages/{scene.village.id}/claim-queue", headers=other.scorers[0]
    )
    assert_problem(queue, 404, "village.not_found")


async def test_a_scorer_limited_to_other_groups_does_not_review(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    other_group = await f.create_group(db, scene.village)
    person = await f.create_person(db, scene.village)
    await f.grant(db, person, Role.SCORER, village=scene.village, groups=[other_group])
    headers = await f.login_headers(db, settings, person)
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    response = await review(client, headers, claim["id"])
    assert_problem(response, 404, "claim.not_found")
    queue = await client.get(f"{API}/villages/{scene.village.id}/claim-queue", headers=headers)
    assert queue.json()["items"] == []
    assert (await db.execute(select(func.count()).select_from(ClaimReview))).scalar_one() == 0


async def test_whoever_records_a_claim_does_not_review_it(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    """A leader who may decide alone must not both record a claim and approve it."""
    recorded = await client.post(
        f"{API}/households/{scene.household.id}/claims",
        headers=scene.leader,
        json=claim_body(scene.items.volunteer),
    )
    assert recorded.status_code == 201, recorded.text
    claim_id = recorded.json()["id"]

    assert_problem(await review(client, scene.leader, claim_id), 403, "claim.own_record")
    queue = await client.get(f"{API}/villages/{scene.village.id}/claim-queue", headers=scene.leader)
    assert queue.json()["items"] == []
    assert (await db.execute(select(func.count()).select_from(ClaimReview))).scalar_one() == 0
    assert await bonus_entries(db, scene.household) == []
    # Anyone else of the group still reviews it.
    assert (await review(client, scene.scorers[0], claim_id)).status_code == 200


async def test_other_roles_do_not_widen_whom_a_limited_scorer_judges(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    """A village admin (or town supervisor) who is also a scorer for another village group
    reads every household, but reviews and records only for their own groups."""
    other_group = await f.create_group(db, scene.village)
    person = await f.create_person(db, scene.village)
    await f.grant(db, person, Role.SCORER, village=scene.village, groups=[other_group])
    await f.grant(db, person, Role.VILLAGE_ADMIN, village=scene.village)
    headers = await f.login_headers(db, settings, person)
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()

    assert_problem(await review(client, headers, claim["id"]), 404, "claim.not_found")
    queue = await client.get(f"{API}/villages/{scene.village.id}/claim-queue", headers=headers)
    assert queue.json()["items"] == []
    on_behalf = await client.post(
        f"{API}/households/{scene.household.id}/claims",
        headers=headers,
        json=claim_body(scene.items.blood, on=TODAY - timedelta(days=1)),
    )
    assert_problem(on_behalf, 404, "household.not_found")
    assert (await db.execute(select(func.count()).select_from(ClaimReview))).scalar_one() == 0
    assert await claim_count(db) == 1
    # As village admin they still read the household's claims.
    listed = await client.get(f"{API}/households/{scene.household.id}/claims", headers=headers)
    assert [c["id"] for c in listed.json()["items"]] == [claim["id"]]
