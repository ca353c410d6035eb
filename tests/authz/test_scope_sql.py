"""The scopes written as SQL text for statements sent straight to the driver select exactly
what their SQLAlchemy forms select, for every kind of caller."""

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.authz import (
    STAFF_READ_ROLES,
    household_scope,
    household_scope_args,
    household_scope_sql,
    village_scope,
    village_scope_sql,
)
from app.db import driver_connection
from app.models import Household, Role, Village
from app.security import Grant, Principal
from app.services.ledger import UNPUBLISHED_READERS
from tests import factories as f


def _principal(*grants: Grant, home: Household | None = None) -> Principal:
    return Principal(
        person_id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        grants=grants,
        household_id=home.id if home else None,
        household_village_id=home.village_id if home else None,
    )


@pytest.fixture
async def county(db: AsyncSession) -> dict[str, object]:
    town, other_town = await f.create_town(db), await f.create_town(db)
    a = await f.create_village(db, town)
    b = await f.create_village(db, town)
    c = await f.create_village(db, other_town)
    group, other_group = await f.create_group(db, a), await f.create_group(db, a)
    households = [
        await f.create_household(db, a, group),
        await f.create_household(db, a, other_group),
        await f.create_household(db, a),
        await f.create_household(db, b),
        await f.create_household(db, c),
    ]
    home = households[3]

    def village(role: Role, v: Village, *groups: uuid.UUID) -> Grant:
        return Grant(role, v.town_id, v.id, tuple(groups))

    principals = {
        "villager": _principal(home=home),
        "nobody": _principal(),
        "district": _principal(Grant(Role.DISTRICT_ADMIN, None, None)),
        "town": _principal(Grant(Role.TOWN_SUPERVISOR, town.id, None)),
        "admin": _principal(village(Role.VILLAGE_ADMIN, a), home=home),
        "scorer": _principal(village(Role.SCORER, b)),
        "scorer of a group": _principal(village(Role.SCORER, a, group.id)),
        "leader of groups": _principal(village(Role.SCORING_LEADER, a, group.id, other_group.id)),
        "attendant": _principal(village(Role.SHOP_ATTENDANT, c), home=home),
        "several": _principal(
            village(Role.SCORER, a, group.id),
            village(Role.VILLAGE_ADMIN, c),
            Grant(Role.TOWN_SUPERVISOR, other_town.id, None),
        ),
    }
    return {
        "households": {h.id for h in households},
        "villages": {a.id, b.id, c.id},
        "principals": principals,
    }


async def test_household_scope_sql_selects_what_household_scope_does(
    db: AsyncSession, county: dict[str, object]
) -> None:
    ours: set[uuid.UUID] = county["households"]  # type: ignore[assignment]
    principals: dict[str, Principal] = county["principals"]  # type: ignore[assignment]
    driver = await driver_connection(db)
    statement = f"SELECT h.id FROM household h WHERE {household_scope_sql('h', 1)}"
    for name, principal in principals.items():
        expected = set(
            (await db.execute(select(col(Household.id)).where(household_scope(principal))))
            .scalars()
            .all()
        )
        got = {row["id"] for row in await driver.fetch(statement, *household_scope_args(principal))}
        assert got & ours == expected & ours, name


@pytest.mark.parametrize("roles", [UNPUBLISHED_READERS, STAFF_READ_ROLES])
async def test_village_scope_sql_selects_what_village_scope_does(
    db: AsyncSession, county: dict[str, object], roles: tuple[Role, ...]
) -> None:
    ours: set[uuid.UUID] = county["villages"]  # type: ignore[assignment]
    principals: dict[str, Principal] = county["principals"]  # type: ignore[assignment]
    driver = await driver_connection(db)
    scope = village_scope_sql("v.id", everyone="$1", villages="$2", towns="$3")
    statement = f"SELECT v.id FROM village v WHERE {scope}"
    for name, principal in principals.items():
        expected = set(
            (
                await db.execute(
                    select(col(Village.id)).where(
                        village_scope(principal, col(Village.id), roles=roles)
                    )
                )
            )
            .scalars()
            .all()
        )
        got = {
            row["id"]
            for row in await driver.fetch(
                statement,
                principal.is_district_admin,
                list(principal.village_ids(*roles)),
                list(principal.supervised_town_ids()),
            )
        }
        assert got & ours == expected & ours, name
