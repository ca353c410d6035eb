"""Photo evidence: decoded from the bytes alone, re-encoded (no EXIF, nothing trailing), kept in
a PhotoStore, and shown only to callers who may see what the photo is attached to."""

import io
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread
import pillow_heif
from PIL import Image, ImageOps
from sqlalchemy import ColumnElement, Uuid, any_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import household_scope
from app.errors import AppError, NotFound, Unprocessable
from app.models import Claim, Household, Objection, Photo, Role, Scorecard
from app.security import Principal
from app.storage import PhotoStore

pillow_heif.register_heif_opener()

# Pillow's own guard, a ceiling above any PHOTO_MAX_PIXELS worth setting: past this it warns
# (which reencode() turns into a refusal) and past twice this it raises.
Image.MAX_IMAGE_PIXELS = 100_000_000
# A decoded photo takes 3-4 bytes a pixel (150-200 MB at 50 MP) however small its file: without
# this, as many decodes as the thread pool has threads (40) could run at once.
DECODES = anyio.CapacityLimiter(2)
THUMBNAIL_SIZE = (320, 320)
MAX_PER_CLAIM = 9


class PhotoRefused(AppError):
    status = 422
    code = "photo.unreadable"
    title = "图片无法识别，请重新拍摄或选择照片"


def unsupported_type() -> AppError:
    return AppError(
        "Only JPEG, PNG, WebP and HEIC images are accepted (decided from the content).",
        status=415,
        code="photo.unsupported_type",
        title="只能上传 JPEG、PNG、WebP 或 HEIC 格式的照片",
    )


TOO_LARGE_CODE = "photo.too_large"
TOO_LARGE_TITLE = "照片太大"


def too_large(limit: int) -> AppError:
    return AppError(
        f"A photo may be at most {limit} bytes.",
        status=413,
        code=TOO_LARGE_CODE,
        title=TOO_LARGE_TITLE,
    )


def sniff(data: bytes) -> str | None:
    """The image format from its leading bytes; the name and the declared type are ignored."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim"):
        return "HEIF"
    return None


# What each accepted format is stored as: HEIC is re-encoded to JPEG, which every phone shows.
OUTPUT = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "HEIF": "JPEG"}
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


@dataclass
class Encoded:
    media_type: str
    width: int
    height: int
    image: bytes
    thumbnail: bytes


def _save(image: Image.Image, fmt: str) -> bytes:
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    # No exif= or pnginfo= is passed, so nothing of the original's metadata is written.
    image.save(buffer, fmt, quality=85) if fmt != "PNG" else image.save(buffer, fmt)
    return buffer.getvalue()


def reencode(data: bytes, max_pixels: int) -> Encoded:
    """Decode the image and write it afresh: EXIF (GPS positions of homes), comments and any
    bytes after the image are left behind. CPU-bound: run it in a thread."""
    fmt = sniff(data)
    if fmt is None:
        raise unsupported_type()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as opened:
                width, height = opened.size
                # Refused from the header, before a single pixel is decompressed.
                if width * height > max_pixels:
                    raise PhotoRefused(
                        f"The image has {width}x{height} pixels; at most {max_pixels} are taken.",
                        code="photo.too_many_pixels",
                        title="照片尺寸过大",
                    )
                opened.load()
                # Phones record the camera's rotation in EXIF; apply it before EXIF is dropped.
                # In place: a copy would hold a second full-size image.
                ImageOps.exif_transpose(opened, in_place=True)
                image = opened
    except PhotoRefused:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise PhotoRefused(
            "The image is too large to decode.", code="photo.too_many_pixels", title="照片尺寸过大"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise PhotoRefused("The image could not be decoded.") from exc
    output = OUTPUT[fmt]
    width, height = image.size
    full = _save(image, output)
    # Shrunk in place once the full image is written: no second full-size copy.
    image.thumbnail(THUMBNAIL_SIZE)
    return Encoded(
        media_type=MEDIA_TYPES[output],
        width=width,
        height=height,
        image=full,
        thumbnail=_save(image, "JPEG"),
    )


async def reencode_in_turn(data: bytes, max_pixels: int) -> Encoded:
    """reencode() in a worker thread, at most DECODES at a time: the others wait their turn."""
    return await anyio.to_thread.run_sync(reencode, data, max_pixels, limiter=DECODES)


def image_key(photo_id: uuid.UUID) -> str:
    return str(photo_id)


def thumbnail_key(photo_id: uuid.UUID) -> str:
    return f"{photo_id}-thumb"


def uploader_village(principal: Principal, village_id: uuid.UUID | None) -> uuid.UUID:
    """The village an upload belongs to: the caller's own, or one they work in as staff."""
    staff_villages = principal.village_ids(Role.VILLAGE_ADMIN, Role.SCORING_LEADER, Role.SCORER)
    if village_id is None:
        village_id = principal.household_village_id or next(iter(sorted(staff_villages)), None)
    if village_id is None or not (
        village_id == principal.household_village_id
        or village_id in staff_villages
        or principal.is_district_admin
    ):
        raise NotFound("No such village.", code="village.not_found")
    return village_id


async def upload(
    session: AsyncSession,
    store: PhotoStore,
    principal: Principal,
    data: bytes,
    *,
    village_id: uuid.UUID | None,
    max_pixels: int,
) -> Photo:
    village = uploader_village(principal, village_id)
    encoded = await reencode_in_turn(data, max_pixels)
    photo = Photo(
        village_id=village,
        uploader_id=principal.person_id,
        media_type=encoded.media_type,
        width=encoded.width,
        height=encoded.height,
        size_bytes=len(encoded.image),
    )
    session.add(photo)
    await session.flush()
    # Bytes whose row then fails to commit are never served (no row points at them).
    await store.put(image_key(photo.id), encoded.image)
    await store.put(thumbnail_key(photo.id), encoded.thumbnail)
    return photo


def _visible(principal: Principal) -> ColumnElement[bool]:
    """A photo is seen by its uploader, and by whoever may see the household it is evidence
    for (the household itself, its scorers, the village admin, the town)."""
    attached_to_visible = col(Photo.claim_id).in_(
        select(col(Claim.id))
        .join(Household, col(Household.id) == col(Claim.household_id))
        .where(household_scope(principal))
    )
    on_visible_card = col(Photo.scorecard_id).in_(
        select(col(Scorecard.id))
        .join(Household, col(Household.id) == col(Scorecard.household_id))
        .where(household_scope(principal))
    )
    objection_visible = col(Photo.objection_id).in_(
        select(col(Objection.id))
        .join(Household, col(Household.id) == col(Objection.household_id))
        .where(household_scope(principal))
    )
    return or_(
        col(Photo.uploader_id) == principal.person_id,
        attached_to_visible,
        on_visible_card,
        objection_visible,
    )


async def read(
    session: AsyncSession,
    store: PhotoStore,
    principal: Principal,
    photo_id: uuid.UUID,
    *,
    thumbnail: bool,
) -> tuple[bytes, str]:
    photo = (
        await session.execute(select(Photo).where(col(Photo.id) == photo_id, _visible(principal)))
    ).scalar_one_or_none()
    data = None
    if photo is not None:
        data = await store.get(thumbnail_key(photo.id) if thumbnail else image_key(photo.id))
    if photo is None or data is None:
        raise NotFound("No such photo.", code="photo.not_found")
    return data, "image/jpeg" if thumbnail else photo.media_type


async def attach(
    session: AsyncSession,
    principal: Principal,
    photo_ids: list[uuid.UUID],
    claim: Claim,
) -> None:
    """Attach the caller's own unattached uploads of the claim's village, all or none."""
    await attach_evidence(
        session, principal, photo_ids, village_id=claim.village_id, claim_id=claim.id
    )


async def attach_evidence(
    session: AsyncSession,
    principal: Principal,
    photo_ids: list[uuid.UUID],
    *,
    village_id: uuid.UUID,
    claim_id: uuid.UUID | None = None,
    objection_id: uuid.UUID | None = None,
) -> None:
    """Attach the caller's own unattached uploads of the village to a claim or an objection,
    all or none; refusals carry the code of what they were for (claim.…, objection.…).

    One conditional UPDATE: a photo the cleanup job removed, or something else took, in the
    meantime is simply not matched.
    """
    if not photo_ids:
        return
    what = "claim" if claim_id is not None else "objection"
    if len(set(photo_ids)) != len(photo_ids):
        raise Unprocessable("A photo is listed twice.", code=f"{what}.photo_repeated")
    attached = await session.execute(
        update(Photo)
        .where(
            col(Photo.id).in_(photo_ids),
            col(Photo.uploader_id) == principal.person_id,
            col(Photo.village_id) == village_id,
            _unattached(),
        )
        .values(claim_id=claim_id, objection_id=objection_id, attached_at=clock.now())
        .returning(col(Photo.id))
    )
    if len(attached.all()) != len(photo_ids):
        raise Unprocessable(
            f"Every photo must be an upload of your own, not yet used for another {what}.",
            code=f"{what}.photo_unavailable",
            title="照片不可用，请重新上传",
        )


async def attach_to_card(
    session: AsyncSession,
    principal: Principal,
    photo_ids: list[uuid.UUID],
    *,
    card_id: uuid.UUID,
    village_id: uuid.UUID,
) -> None:
    """Attach a card's evidence, all or none: the scorer's own unattached uploads of the
    village, or photos already on this card (a resave, perhaps by another scorer). A photo may
    appear on several lines of one card. One conditional UPDATE, as for claims."""
    wanted = set(photo_ids)
    if not wanted:
        return
    attached = await session.execute(
        update(Photo)
        .where(
            col(Photo.id).in_(wanted),
            col(Photo.village_id) == village_id,
            or_(
                col(Photo.scorecard_id) == card_id,
                (col(Photo.uploader_id) == principal.person_id) & _unattached(),
            ),
        )
        .values(
            scorecard_id=card_id, attached_at=func.coalesce(col(Photo.attached_at), clock.now())
        )
        .returning(col(Photo.id))
    )
    if len(attached.all()) != len(wanted):
        raise Unprocessable(
            "Every photo must be an upload of your own, not used elsewhere, or already on "
            "this card.",
            code="scorecard.photo_unavailable",
            title="照片不可用，请重新上传",
        )


def _unattached() -> ColumnElement[bool]:
    return (
        col(Photo.claim_id).is_(None)
        & col(Photo.objection_id).is_(None)
        & col(Photo.scorecard_id).is_(None)
    )


async def photos_of(
    session: AsyncSession, claim_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    return await _attached_to(session, col(Photo.claim_id), claim_ids)


async def objection_photos(
    session: AsyncSession, objection_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    return await _attached_to(session, col(Photo.objection_id), objection_ids)


async def _attached_to(
    session: AsyncSession, owner: Any, owner_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    rows = await session.execute(
        select(owner, col(Photo.id))
        .where(owner.in_(owner_ids))
        .order_by(col(Photo.attached_at), col(Photo.id))
    )
    found: dict[uuid.UUID, list[uuid.UUID]] = {o: [] for o in owner_ids}
    for owner_id, photo_id in rows:
        if owner_id is not None:
            found[owner_id].append(photo_id)
    return found


async def remove_unattached(
    session: AsyncSession, *, older_than: timedelta, now: datetime | None = None
) -> list[uuid.UUID]:
    """Delete the rows of uploads never attached; the caller removes their bytes after the
    commit. One DELETE … RETURNING: two cleanups running at once each delete a row at most
    once, and a photo being attached at that moment is either attached or deleted, not both."""
    cutoff = (now or clock.now()) - older_than
    deleted = await session.execute(
        delete(Photo).where(_unattached(), col(Photo.created_at) < cutoff).returning(col(Photo.id))
    )
    return list(deleted.scalars())


async def orphan_keys(
    session: AsyncSession, store: PhotoStore, *, older_than: timedelta, now: datetime | None = None
) -> list[str]:
    """Stored files no photo row points at: written by an upload whose transaction then failed.
    Only files older than `older_than` are considered, long past any upload still running."""
    keys = await store.keys_older_than((now or clock.now()) - older_than)
    ids: dict[str, uuid.UUID] = {}
    for key in keys:
        try:
            ids[key] = uuid.UUID(key.removesuffix("-thumb"))
        except ValueError:
            continue
    if not ids:
        return []
    # One array parameter, however many files: an IN list takes a parameter per id, and a
    # statement may carry at most 32,767.
    wanted = bindparam("ids", list(set(ids.values())), type_=ARRAY(Uuid()))
    known = set(
        (
            await session.execute(select(col(Photo.id)).where(col(Photo.id) == any_(wanted)))
        ).scalars()
    )
    return [key for key, photo_id in ids.items() if photo_id not in known]
