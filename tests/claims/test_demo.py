"""The demo's home village shows claims in every state and an activity to check in to."""

from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlmodel import col

from app.db import create_engine
from app.demo import seed_demo
from app.models import Activity, Claim, ClaimStatus, LedgerEntry
from tests.conftest import database_of_its_own


@pytest.fixture
async def demo_url(database_url: str) -> AsyncIterator[str]:
    async with database_of_its_own(database_url, "vp_demo_claims") as url:
        yield url


async def test_demo_claims_and_activity(demo_url: str) -> None:
    await seed_demo(demo_url)
    await seed_demo(demo_url)  # a second run adds nothing
    engine = create_engine(demo_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            claims = (await conn.execute(select(Claim.status, Claim.on_behalf, Claim.id))).all()
            activities = (await conn.execute(select(Activity.title))).scalars().all()
            approved = [c.id for c in claims if c.status is ClaimStatus.APPROVED]
            bonus = (
                (
                    await conn.execute(
                        select(LedgerEntry.points).where(col(LedgerEntry.source_id).in_(approved))
                    )
                )
                .scalars()
                .all()
            )
    finally:
        await engine.dispose()
    assert Counter(c.status for c in claims) == {
        ClaimStatus.PENDING: 2,
        ClaimStatus.APPROVED: 1,
        ClaimStatus.REJECTED: 1,
    }
    assert sum(c.on_behalf for c in claims) == 1
    assert activities == ["垃圾分类宣传志愿活动"]
    assert bonus == [2]
