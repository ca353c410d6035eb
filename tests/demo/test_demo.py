from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from app import clock
from app.db import create_engine, create_sessionmaker
from app.demo import seed_demo
from app.models import (
    Household,
    HouseholdCard,
    PeriodStatus,
    Role,
    RoleGrant,
    RuleSet,
    RuleSetStatus,
    ScoringPeriod,
    Shop,
    Village,
)
from app.services.ledger import verify_village_chain
from tests.conftest import database_of_its_own


@pytest.fixture
async def demo_url(database_url: str) -> AsyncIterator[str]:
    """A database of the demo's own: it commits, like `serve --demo` does."""
    async with database_of_its_own(database_url, "vp_demo") as url:
        yield url


async def test_demo_fills_once_with_villages_on_three_templates(
    demo_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_demo(demo_url)
    first = capsys.readouterr().out
    await seed_demo(demo_url)
    second = capsys.readouterr().out
    assert "Demo data created" in first
    assert "Demo data already there" in second

    engine = create_engine(demo_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            households = (
                await conn.execute(select(func.count()).select_from(Household))
            ).scalar_one()
            villages = (await conn.execute(select(func.count()).select_from(Village))).scalar_one()
            roles = set((await conn.execute(select(RoleGrant.role))).scalars())
            rule_sets = (await conn.execute(select(RuleSet.template_code, RuleSet.status))).all()
            published = list((await conn.execute(select(ScoringPeriod.status))).scalars())
            shops = (await conn.execute(select(func.count()).select_from(Shop))).scalar_one()
            attendant_shop = (
                await conn.execute(
                    select(RoleGrant.shop_id).where(RoleGrant.role == Role.SHOP_ATTENDANT)
                )
            ).scalar_one()
            cards = (
                await conn.execute(select(func.count()).select_from(HouseholdCard))
            ).scalar_one()
        async with create_sessionmaker(engine)() as session:
            village_ids = list((await session.execute(select(Village.id))).scalars())
            verified = all([(await verify_village_chain(session, v)).ok for v in village_ids])
    finally:
        await engine.dispose()
    assert villages >= 2
    assert 40 <= households <= 60
    assert len(roles) == 6
    assert len(rule_sets) == villages  # the second run added no rules
    assert {status for _, status in rule_sets} == {RuleSetStatus.APPROVED}
    assert len({template for template, _ in rule_sets}) >= 3
    # The home village's last two months (fewer early in the year) are scored and published.
    assert len(published) == min(2, clock.today().month - 1)
    assert all(status is PeriodStatus.PUBLISHED for status in published)
    assert verified
    # The home village's shop, its attendant scoped to it, a printed card, a waiting order.
    assert shops == 1
    assert attendant_shop is not None
    assert cards == 1
    assert "Shop: " in first
    # In January nothing is published yet, so the villager has no points to order with.
    assert ("waiting to be collected" in first) == (clock.today().month > 1)
