"""Where photo bytes live. The database holds what a photo is and who may see it; a store
only keeps bytes under a key, so an S3-compatible store can stand in for the local disk."""

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Protocol

import anyio.to_thread

from app.config import Settings


class PhotoStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def delete(self, key: str) -> None:
        """Deleting a key that is not there is not an error: cleanup may run twice."""

    async def keys_older_than(self, cutoff: datetime) -> list[str]: ...


class LocalPhotoStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, key: str) -> Path:
        # Keys are made by the service from UUIDs, never from what a caller sent.
        if "/" in key or "\\" in key or key.startswith("."):
            raise ValueError(f"bad photo key {key!r}")
        return self.folder / key[:2] / key

    # Disk I/O runs in a worker thread: a slow disk must not stall every other request.
    async def put(self, key: str, data: bytes) -> None:
        await anyio.to_thread.run_sync(self._put, key, data)

    async def get(self, key: str) -> bytes | None:
        return await anyio.to_thread.run_sync(self._get, key)

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(self._path(key).unlink, True)

    async def keys_older_than(self, cutoff: datetime) -> list[str]:
        return await anyio.to_thread.run_sync(self._keys_older_than, cutoff.timestamp())

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside and renamed, so a reader never sees half a file.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def _keys_older_than(self, limit: float) -> list[str]:
        if not self.folder.exists():
            return []
        return [
            path.name
            for path in self.folder.glob("*/*")
            # Files being written are named .upload-*; they are never keys.
            if not path.name.startswith(".") and modified_before(path, limit)
        ]


def modified_before(path: Path, limit: float) -> bool:
    """False for a file gone since it was listed: a cleanup running at the same time removed
    it, or an upload's temporary file was renamed."""
    try:
        return path.stat().st_mtime < limit
    except FileNotFoundError:
        return False


def photo_store(settings: Settings) -> PhotoStore:
    return LocalPhotoStore(settings.photo_folder)
