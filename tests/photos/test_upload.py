"""Photo evidence: the type comes from the bytes, hostile files are refused or neutralised, and
only the uploader (until attached) may read a photo."""

import io
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import Photo, Role
from app.services import photos as service
from app.storage import LocalPhotoStore
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.photos import images
from tests.photos.conftest import API, upload


async def photo_count(db: AsyncSession) -> int:
    return (await db.execute(select(func.count()).select_from(Photo))).scalar_one()


@pytest.fixture
async def villager(db: AsyncSession, settings: Settings) -> dict[str, str]:
    village = await f.create_village(db)
    household = await f.create_household(db, village)
    member = await f.add_member(db, household, is_head=True)
    person = await db.get(f.Person, member.person_id)
    assert person is not None
    return await f.login_headers(db, settings, person)


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (images.jpeg(), "image/jpeg"),
        (images.png(), "image/png"),
        (images.webp(), "image/webp"),
        (images.heic(), "image/jpeg"),
    ],
    ids=["jpeg", "png", "webp", "heic"],
)
async def test_accepted_formats_are_stored_reencoded(
    client: httpx.AsyncClient,
    db: AsyncSession,
    villager: dict[str, str],
    data: bytes,
    media_type: str,
) -> None:
    response = await upload(client, villager, data, name="x.bin", content_type="text/plain")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["media_type"] == media_type
    assert body["claim_id"] is None
    served = await client.get(f"{API}/photos/{body['id']}", headers=villager)
    assert served.status_code == 200
    assert served.headers["content-type"] == media_type
    assert served.headers["x-content-type-options"] == "nosniff"
    with Image.open(io.BytesIO(served.content)) as image:
        assert image.size == (body["width"], body["height"])
    thumb = await client.get(f"{API}/photos/{body['id']}?thumbnail=true", headers=villager)
    assert thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert max(image.size) <= 320


async def test_gps_exif_is_gone_after_upload(
    client: httpx.AsyncClient, villager: dict[str, str]
) -> None:
    original = images.jpeg(gps=True)
    with Image.open(io.BytesIO(original)) as image:
        assert image.getexif().get_ifd(images.GPS_IFD), "the test image must carry GPS"
    response = await upload(client, villager, original)
    assert response.status_code == 201
    served = await client.get(f"{API}/photos/{response.json()['id']}", headers=villager)
    with Image.open(io.BytesIO(served.content)) as image:
        assert not image.getexif().get_ifd(images.GPS_IFD)
        assert len(image.getexif()) == 0
        assert "exif" not in image.info
    assert b"Exif" not in served.content
    assert b"PhoneMaker" not in served.content


async def test_trailing_data_is_dropped(
    client: httpx.AsyncClient, villager: dict[str, str]
) -> None:
    hidden = b"<?php system($_GET['c']); ?>" * 10
    response = await upload(client, villager, images.png() + hidden, name="a.png")
    assert response.status_code == 201, response.text
    served = await client.get(f"{API}/photos/{response.json()['id']}", headers=villager)
    assert served.content.endswith(b"IEND\xaeB`\x82")
    assert b"php" not in served.content


async def test_a_text_file_named_jpg_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, villager: dict[str, str]
) -> None:
    before = await photo_count(db)
    response = await upload(client, villager, b"just some text, not a photo\n" * 20)
    assert_problem(response, 415, "photo.unsupported_type")
    assert await photo_count(db) == before


async def test_a_broken_image_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, villager: dict[str, str]
) -> None:
    before = await photo_count(db)
    response = await upload(client, villager, images.jpeg()[:40])
    assert_problem(response, 422, "photo.unreadable")
    assert await photo_count(db) == before


async def test_a_huge_dimension_image_is_refused_from_its_header(
    client: httpx.AsyncClient, db: AsyncSession, villager: dict[str, str]
) -> None:
    before = await photo_count(db)
    response = await upload(client, villager, images.png_bomb(), name="bomb.png")
    assert_problem(response, 422, "photo.too_many_pixels")
    assert await photo_count(db) == before


def test_pillows_own_bomb_guard_is_a_refusal_too() -> None:
    # Past Pillow's limit, even with our own pixel limit out of the way.
    with pytest.raises(service.PhotoRefused) as refused:
        service.reencode(images.png_bomb(), max_pixels=10**12)
    assert refused.value.code == "photo.too_many_pixels"


async def test_a_file_over_the_size_limit_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, villager: dict[str, str], settings: Settings
) -> None:
    before = await photo_count(db)
    big = images.jpeg() + b"\0" * settings.photo_max_bytes
    response = await upload(client, villager, big)
    assert_problem(response, 413, "photo.too_large")
    assert await photo_count(db) == before


async def test_a_body_without_a_file_is_refused(
    client: httpx.AsyncClient, villager: dict[str, str]
) -> None:
    response = await client.post(f"{API}/photos", headers=villager, data={"other": "x"})
    assert_problem(response, 422, "photo.missing_file")


async def test_unattached_photos_are_seen_by_their_uploader_only(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, villager: dict[str, str]
) -> None:
    response = await upload(client, villager, images.jpeg())
    photo_id = response.json()["id"]
    photo = await db.get(Photo, photo_id)
    assert photo is not None
    village = await db.get(f.Village, photo.village_id)
    assert village is not None
    # Even the village's own admin: the photo is evidence of nothing yet.
    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    refused = await client.get(
        f"{API}/photos/{photo_id}", headers=await f.login_headers(db, settings, admin)
    )
    assert_problem(refused, 404, "photo.not_found")


async def test_upload_into_a_village_not_ones_own_is_not_found(
    client: httpx.AsyncClient, db: AsyncSession, villager: dict[str, str]
) -> None:
    other = await f.create_village(db)
    before = await photo_count(db)
    response = await upload(client, villager, images.jpeg(), village_id=str(other.id))
    assert_problem(response, 404, "village.not_found")
    assert await photo_count(db) == before


async def test_cleanup_removes_old_unattached_photos_and_their_files(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, villager: dict[str, str]
) -> None:
    old = (await upload(client, villager, images.jpeg())).json()["id"]
    fresh = (await upload(client, villager, images.png())).json()["id"]
    store = LocalPhotoStore(settings.photo_folder)
    old_photo = await db.get(Photo, old)
    assert old_photo is not None
    old_photo.created_at -= timedelta(hours=settings.photo_unattached_hours + 1)
    await db.flush()
    removed = await service.remove_unattached(
        db, older_than=timedelta(hours=settings.photo_unattached_hours)
    )
    assert [str(r) for r in removed] == [old]
    # A second run (or a second process) finds nothing more to do.
    assert await service.remove_unattached(db, older_than=timedelta(hours=24)) == []
    for photo_id in removed:
        await store.delete(service.image_key(photo_id))
        await store.delete(service.image_key(photo_id))
    assert await store.get(old) is None
    assert await store.get(fresh) is not None
    assert await db.get(Photo, fresh) is not None


async def test_more_than_one_file_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, villager: dict[str, str]
) -> None:
    before = await photo_count(db)
    response = await client.post(
        f"{API}/photos",
        headers=villager,
        files=[
            ("file", ("a.jpg", images.jpeg(), "image/jpeg")),
            ("file", ("b.png", images.png(), "image/png")),
        ],
    )
    assert_problem(response, 422, "photo.missing_file")
    assert await photo_count(db) == before


async def test_a_chunked_body_over_the_limit_is_cut_off(
    client: httpx.AsyncClient, db: AsyncSession, villager: dict[str, str], settings: Settings
) -> None:
    """Without a declared length the bytes are counted as they arrive."""
    boundary = "vp-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield head + images.jpeg()
        for _ in range(settings.photo_max_bytes // 65536 + 10):
            sent += 65536
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    before = await photo_count(db)
    response = await client.post(
        f"{API}/photos",
        headers={**villager, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=body(),
    )
    assert_problem(response, 413, "photo.too_large")
    assert "content-length" not in response.request.headers
    # Cut off at the limit: the rest of the body was never asked for.
    assert sent < settings.photo_max_bytes + 3 * 65536
    assert await photo_count(db) == before


def test_a_rotated_photo_is_stored_upright_at_full_size_with_a_small_thumbnail() -> None:
    """The image is turned and shrunk in place (no full-size copies): the full image must be
    written before the thumbnail is made from it."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned a quarter; view rotated 90° clockwise
    Image.new("RGB", (1000, 600), "green").save(buffer, "JPEG", exif=exif)
    encoded = service.reencode(buffer.getvalue(), max_pixels=10**7)
    assert (encoded.width, encoded.height) == (600, 1000)
    with Image.open(io.BytesIO(encoded.image)) as full:
        assert full.size == (600, 1000)
        assert not full.getexif()
    with Image.open(io.BytesIO(encoded.thumbnail)) as thumbnail:
        assert thumbnail.size == (192, 320)
