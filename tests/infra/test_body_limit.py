"""Request bodies past REQUEST_MAX_BYTES are refused before a route reads them whole, whether
their length is declared or they arrive chunked; photo uploads and household imports keep
limits of their own."""

import json
from collections.abc import AsyncIterator

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import Claim, Role
from app.services import household_import
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.claims.conftest import API, build_scene, claim_body
from tests.households.test_import import csv_bytes, upload
from tests.photos.conftest import upload as upload_photo

CHUNK = 64 * 1024


def padded_claim(settings: Settings, claim: dict[str, object]) -> bytes:
    """A claim whose JSON is just past the limit (whitespace is valid JSON)."""
    body = json.dumps(claim).encode()
    return body + b" " * (settings.request_max_bytes - len(body) + 1)


async def chunked(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


async def claim_count(db: AsyncSession) -> int:
    return (await db.execute(select(func.count()).select_from(Claim))).scalar_one()


async def test_a_declared_length_past_the_limit_is_refused_unread(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await build_scene(db, settings)
    body = padded_claim(settings, claim_body(scene.items.volunteer))
    response = await client.post(
        f"{API}/claims",
        headers={**scene.villager, "Content-Type": "application/json"},
        content=body,
    )
    assert_problem(response, 413, "request.too_large")
    assert response.json()["max_bytes"] == settings.request_max_bytes
    assert await claim_count(db) == 0


async def test_a_chunked_body_is_refused_once_it_passes_the_limit(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await build_scene(db, settings)
    body = padded_claim(settings, claim_body(scene.items.volunteer))
    request = client.build_request(
        "POST",
        f"{API}/claims",
        headers={**scene.villager, "Content-Type": "application/json"},
        content=chunked(body),
    )
    assert "content-length" not in request.headers
    response = await client.send(request)
    assert_problem(response, 413, "request.too_large")
    assert await claim_count(db) == 0


async def test_a_body_within_the_limit_is_read(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await build_scene(db, settings)
    body = json.dumps(claim_body(scene.items.volunteer)).encode()
    request = client.build_request(
        "POST",
        f"{API}/claims",
        headers={**scene.villager, "Content-Type": "application/json"},
        content=chunked(body + b" " * (settings.request_max_bytes - len(body))),
    )
    response = await client.send(request)
    assert response.status_code == 201, response.text
    assert await claim_count(db) == 1


async def test_photo_uploads_keep_their_own_limit(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await build_scene(db, settings)
    # Past REQUEST_MAX_BYTES, within PHOTO_MAX_BYTES: the upload route judges it (not an image).
    response = await upload_photo(client, scene.villager, b"x" * (2 * settings.request_max_bytes))
    assert_problem(response, 415, "photo.unsupported_type")


async def test_household_imports_keep_their_own_limit(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    village = await f.create_village(db)
    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    headers = await f.login_headers(db, settings, admin)
    header = csv_bytes([["户号", "姓名"]])
    within = await upload(
        client, village, header + b"x" * (2 * settings.request_max_bytes), headers
    )
    assert within.status_code == 422, within.text
    assert within.json()["code"].startswith("household_import.")
    beyond = await upload(
        client, village, header + b"x" * (2 * household_import.MAX_FILE_BYTES), headers
    )
    assert_problem(beyond, 413, "request.too_large")


async def test_a_read_is_answered_whatever_body_it_carries(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    # No route reads a GET's body, so none is counted or refused: the read is answered as
    # without one.
    scene = await build_scene(db, settings)
    body = b" " * (settings.request_max_bytes + 1)
    read = await client.request("GET", f"{API}/me", content=body, headers=scene.villager)
    assert read.status_code == 200
    assert read.json()["person"]["id"] == str(scene.villager_person.id)
