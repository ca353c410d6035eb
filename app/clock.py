"""The one place the product asks what time it is.

Year ends, January, deadlines and redemption rounds are where a points scheme loses points, so
"now" is an input: tests set it with `frozen`, and outside production the `CLOCK_NOW` setting
(an ISO 8601 time with its offset) moves a whole process to another moment, so a year boundary
can be walked from outside (the server and `year-end` alike). The clock keeps ticking from the
moment it was set, so timestamps still order.

Tokens, login throttles, WeChat's access token and the outbox's leases stay on the system clock:
they are checked against other systems' clocks (PyJWT's `exp`, WeChat's expiry), not the
village calendar.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

from app.timeutil import SHANGHAI

# (the moment set, the monotonic reading when it was set)
_set_at: tuple[datetime, float] | None = None


def now() -> datetime:
    if _set_at is None:
        return datetime.now(UTC)
    moment, since = _set_at
    return moment + timedelta(seconds=time.monotonic() - since)


def today() -> date:
    """The villages' calendar day (Asia/Shanghai)."""
    return now().astimezone(SHANGHAI).date()


def set_now(moment: datetime | None) -> None:
    global _set_at
    if moment is not None and moment.tzinfo is None:
        raise ValueError("the clock takes an aware datetime")
    _set_at = None if moment is None else (moment.astimezone(UTC), time.monotonic())


@contextmanager
def frozen(moment: datetime) -> Iterator[None]:
    """Run a block as if it were `moment` (ticking on from there), then restore the clock."""
    previous = _set_at
    set_now(moment)
    try:
        yield
    finally:
        _restore(previous)


def _restore(previous: tuple[datetime, float] | None) -> None:
    global _set_at
    _set_at = previous
