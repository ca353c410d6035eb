"""A process's memory of things it may forget: at most `size` entries, the oldest first to go."""

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Bounded(Generic[K, V]):
    """A dict of at most `size` entries; a new key past that drops the oldest one (dicts keep
    their insertion order). For what a worker remembers per caller or per record, so that its
    memory stays bounded however many there are."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        if key not in self._entries and len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = value

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)
