"""Where sections built on other branches plug into the village admin's and the town's pages.

A section is one template and one service call: the page awaits `load(session, principal, id)`
(the village's or the town's id) and includes `template` with the result as `data`. Adding the
town dashboard, rankings or the objections queue is one line appending to these lists.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.security import Principal

Loader = Callable[[AsyncSession, Principal, uuid.UUID], Awaitable[Any]]


@dataclass(frozen=True)
class Section:
    template: str
    load: Loader


VILLAGE_ADMIN_SECTIONS: list[Section] = []
TOWN_SECTIONS: list[Section] = []


async def loaded(
    sections: list[Section], session: AsyncSession, principal: Principal, scope_id: uuid.UUID
) -> list[tuple[str, Any]]:
    return [
        (section.template, await section.load(session, principal, scope_id)) for section in sections
    ]
