"""app/bounded.py: what a worker remembers stays within its size, the oldest out first."""

from app.bounded import Bounded


def test_a_new_key_past_the_size_drops_the_oldest_and_a_known_key_drops_none() -> None:
    remembered: Bounded[str, int] = Bounded(2)
    remembered.put("a", 1)
    remembered.put("b", 2)
    remembered.put("b", 3)
    assert (remembered.get("a"), remembered.get("b")) == (1, 3)
    remembered.put("c", 4)
    assert (remembered.get("a"), remembered.get("b"), remembered.get("c")) == (None, 3, 4)
    remembered.forget("b")
    assert remembered.get("b") is None
