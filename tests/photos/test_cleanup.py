"""The photos-cleanup job removes uploads never attached, once, however many run at once."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.cli import _clean_photos
from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.models import Claim, ClaimStatus, Photo
from app.models.base import utcnow
from app.services.photos import image_key, orphan_keys, thumbnail_key
from app.storage import LocalPhotoStore, modified_before
from tests import factories as f
from tests.conftest import database_of_its_own
from tests.photos import images


@pytest.fixture
async def committed_url(database_url: str) -> AsyncIterator[str]:
    async with database_of_its_own(database_url, "vp_photos") as url:
        yield url


async def test_cleanup_is_safe_to_run_twice_and_at_once(
    committed_url: str, tmp_path: Path, settings: Settings
) -> None:
    settings = settings.model_copy(update={"photo_dir": tmp_path})
    store = LocalPhotoStore(tmp_path)
    engine = create_engine(committed_url, pool_size=2)
    old = utcnow() - timedelta(hours=settings.photo_unattached_hours + 1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            village = await f.create_village(session)
            household = await f.create_household(session, village)
            person = await f.create_person(session, village)
            rule_set, _, item = await f.create_rule_set(session, village, year=2030)
            claim = Claim(
                village_id=village.id,
                household_id=household.id,
                rule_item_id=item.id,
                item_lineage_id=item.lineage_id,
                activity_on=rule_set.effective_from,
                description="x",
                status=ClaimStatus.PENDING,
                submitted_by=person.id,
            )
            session.add(claim)
            await session.flush()

            def photo(**fields: object) -> Photo:
                row = Photo(
                    village_id=village.id,
                    uploader_id=person.id,
                    media_type="image/jpeg",
                    width=1,
                    height=1,
                    size_bytes=1,
                    **fields,
                )
                session.add(row)
                return row

            abandoned = photo(created_at=old)
            attached = photo(created_at=old, claim_id=claim.id)
            fresh = photo()
            await session.flush()
            for row in (abandoned, attached, fresh):
                await store.put(image_key(row.id), images.jpeg())
                await store.put(thumbnail_key(row.id), images.jpeg())
            for path in tmp_path.glob("*/*"):
                os.utime(path, (old.timestamp(), old.timestamp()))
        # Files of uploads whose transaction failed: no row points at them.
        orphan, recent_orphan = str(uuid.uuid4()), str(uuid.uuid4())
        await store.put(orphan, images.jpeg())
        os.utime(store._path(orphan), (old.timestamp(), old.timestamp()))
        await store.put(recent_orphan, images.jpeg())

        removed = await asyncio.gather(*(_clean_photos(settings, committed_url) for _ in range(3)))
        assert sorted(removed) == [0, 0, 1]
        assert await _clean_photos(settings, committed_url) == 0

        async with create_sessionmaker(engine)() as session:
            assert await session.get(Photo, abandoned.id) is None
            assert await session.get(Photo, attached.id) is not None
            assert await session.get(Photo, fresh.id) is not None
    finally:
        await engine.dispose()
    assert await store.get(image_key(abandoned.id)) is None
    assert await store.get(thumbnail_key(abandoned.id)) is None
    for kept in (attached, fresh):
        assert await store.get(image_key(kept.id)) is not None
        assert await store.get(thumbnail_key(kept.id)) is not None
    assert await store.get(orphan) is None
    # Younger than the limit: perhaps an upload still committing.
    assert await store.get(recent_orphan) is not None


async def test_orphans_are_found_among_more_files_than_a_statement_has_parameters(
    db: AsyncSession, tmp_path: Path
) -> None:
    """asyncpg allows 32,767 parameters per statement; an IN list of every id broke past it."""
    village = await f.create_village(db)
    person = await f.create_person(db, village)
    ids = [uuid.uuid4() for _ in range(33_000)]
    orphans = ids[:5]
    for photo_id in ids:
        folder = tmp_path / str(photo_id)[:2]
        folder.mkdir(exist_ok=True)
        (folder / image_key(photo_id)).touch()
    await db.execute(
        text(
            "INSERT INTO photo (id, village_id, uploader_id, media_type, width, height,"
            " size_bytes, created_at)"
            " SELECT id, :village, :person, 'image/jpeg', 1, 1, 1, now()"
            " FROM unnest(CAST(:ids AS uuid[])) AS id"
        ),
        {"village": village.id, "person": person.id, "ids": ids[len(orphans) :]},
    )
    found = await orphan_keys(
        db, LocalPhotoStore(tmp_path), older_than=timedelta(0), now=utcnow() + timedelta(hours=1)
    )
    assert sorted(found) == sorted(image_key(i) for i in orphans)


def test_a_file_removed_while_the_folder_is_scanned_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "ab" / str(uuid.uuid4())
    path.parent.mkdir()
    path.touch()
    later = utcnow().timestamp() + 60
    assert modified_before(path, later)
    # What a cleanup running at the same time leaves between the listing and the stat.
    path.unlink()
    assert not modified_before(path, later)
