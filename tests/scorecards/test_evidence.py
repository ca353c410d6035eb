"""Scorecard evidence: lines take photo ids, validated as claims' are; the photos are attached
to the card, so the cleanup of unattached uploads keeps them, and whoever may see the
household sees them."""

import uuid
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.models import Photo
from app.services.photos import remove_unattached
from tests.auth.conftest import assert_problem
from tests.photos import images
from tests.photos.conftest import upload
from tests.scorecards.conftest import Scene, card, line, save


async def test_a_findings_photos_stay_with_the_card_and_the_household_sees_them(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    """Item 11: a photo of a veto finding outlives the 24-hour cleanup of unattached uploads."""
    household = scene.group_a[0]
    photo = (await upload(client, scene.headers["scorer"], images.jpeg())).json()
    stray = (await upload(client, scene.headers["scorer"], images.png())).json()
    body = card(
        line(scene.items["clean"]),
        line(scene.items["veto"], "finding", note="新增违建", photos=[photo["id"]]),
    )

    saved = await save(client, scene, household, body, "scorer")

    assert saved.status_code == 200, saved.text
    [veto_line] = [li for li in saved.json()["lines"] if li["outcome"] == "finding"]
    assert veto_line["photos"] == [photo["id"]]
    removed = await remove_unattached(
        db, older_than=timedelta(hours=24), now=clock.now() + timedelta(days=3)
    )
    assert removed == [uuid.UUID(stray["id"])]
    kept = await db.get(Photo, uuid.UUID(photo["id"]))
    assert kept is not None
    assert kept.scorecard_id is not None
    seen = await client.get(f"{API_PHOTOS}/{photo['id']}", headers=scene.headers["villager"])
    assert seen.status_code == 200
    # A resave by the leader keeps the photo already on the card.
    resaved = await save(client, scene, household, body, "leader")
    assert resaved.status_code == 200, resaved.text


async def test_a_line_refuses_photos_that_are_not_the_scorers_to_give(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    theirs = (await upload(client, scene.headers["leader"], images.jpeg())).json()
    for photos in ([theirs["id"]], [str(uuid.uuid4())]):
        body = card(line(scene.items["clean"], photos=photos))
        refused = await save(client, scene, scene.group_a[0], body, "scorer")
        assert_problem(refused, 422, "scorecard.photo_unavailable")
    free_text = await save(
        client, scene, scene.group_a[0], card(line(scene.items["clean"], photos=["门前.jpg"])),
        "scorer",
    )  # fmt: skip
    assert free_text.status_code == 422
    photo = await db.get(Photo, uuid.UUID(theirs["id"]))
    assert photo is not None
    assert photo.scorecard_id is None


API_PHOTOS = "/api/v1/photos"
