"""旧县's quarterly forms and the town's summary, agreeing with the ledger and the passbooks."""

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from io import BytesIO
from typing import Any

import httpx
from openpyxl import load_workbook
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.config import Settings
from app.models import Household, LedgerKind
from app.schemas.rules import RedemptionPolicy
from app.services import ledger
from tests.supervision.conftest import (
    API,
    FAIR,
    POLICY,
    YEAR,
    Scene,
    add_village,
    at,
    build_scene,
    run_period,
)

JIUXIAN = POLICY.model_copy(update={"redemption": RedemptionPolicy(yuan_per_point=Decimal("1"))})


async def spend(db: AsyncSession, household: Household, points: int, kind: LedgerKind) -> None:
    await ledger.post(
        db,
        household.village_id,
        [
            ledger.NewEntry(
                household_id=household.id,
                kind=kind,
                points=points,
                counts_score=False,
                counts_balance=True,
                year=clock.today().year,
                source_type="test",
            )
        ],
    )


def rows(response: httpx.Response) -> list[tuple[Any, ...]]:
    assert response.status_code == 200, response.text
    return list(load_workbook(BytesIO(response.content)).active.iter_rows(values_only=True))


async def _scene(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> tuple[Scene, list[Household]]:
    scene = await build_scene(client, db, settings, set_clock)
    v = await add_village(db, settings, scene.town, "旧县村", FAIR, policy=JIUXIAN)
    await run_period(
        client, db, set_clock, v, FAIR, submitted=date(YEAR, 3, 18), published=date(YEAR, 3, 22)
    )
    scene.villages["jiuxian"] = v
    # Spent in March (Q1): 6 and 3, 1 of the 3 refunded; April's spend is the next quarter's.
    set_clock(at(date(YEAR, 3, 28)))
    first, second = v.households[0], v.households[2]
    await spend(db, first, -6, LedgerKind.REDEMPTION)
    await spend(db, second, -3, LedgerKind.REDEMPTION)
    await spend(db, second, 1, LedgerKind.REFUND)
    set_clock(at(date(YEAR, 4, 2)))
    await spend(db, first, -2, LedgerKind.REDEMPTION)
    return scene, [first, second]


async def test_fund_request_agrees_with_ledger_and_passbooks(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    scene, (first, second) = await _scene(client, db, settings, set_clock)
    v = scene.villages["jiuxian"]
    response = await client.get(
        f"{API}/villages/{v.village.id}/reports/fund-request",
        params={"year": YEAR, "quarter": 1},
        headers=v.admin,
    )
    sheet = rows(response)
    assert sheet[0][0] == f"旧县街道积分制资金拨付申请表（旧县村 {YEAR}年第1季度）"
    body = sorted(sheet[2:4], key=lambda r: r[1])
    expected = sorted([(first.number, 6), (second.number, 2)])
    assert [(r[1], r[3], r[4], r[5], r[7]) for r in body] == [
        (number, points, points, points, "是") for number, points in expected
    ]
    assert sheet[4][:6] == ("合计", "2户", None, 8, 8, 8)
    assert sheet[4][7] == "是"
    assert ("申请金额（元）", 8) in [r[:2] for r in sheet]


async def test_quarterly_progress_and_town_summary(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    scene, _ = await _scene(client, db, settings, set_clock)
    v = scene.villages["jiuxian"]
    progress = rows(
        await client.get(
            f"{API}/villages/{v.village.id}/reports/quarterly-progress",
            params={"year": YEAR, "quarter": 1},
            headers=scene.supervisor,
        )
    )
    assert progress[0][0] == f"旧县街道旧县村农村人居环境整治积分制推进情况第1季度报表（{YEAR}年）"
    months = {r[0]: r for r in progress[2:5]}
    assert list(months) == ["1月", "2月", "3月"]
    march = months["3月"]
    assert march[1:8] == (4, 4, "是", 0, "是", 0, 7.0)
    assert march[9:13] == (2, 8, 8, "未报备")
    assert months["1月"][12] == "未开展"
    assert progress[5][10] == 8

    summary = rows(
        await client.get(
            f"{API}/towns/{scene.town.id}/reports/quarterly-summary",
            params={"year": YEAR, "quarter": 1},
            headers=scene.supervisor,
        )
    )
    by_name = {r[1]: r for r in summary[2:-1]}
    assert list(by_name) == ["人情村", "和美村", "旧县村"]
    favour = by_name["人情村"]
    assert favour[4:8] == (1, 1, 1, 8.75)
    assert favour[10] == "人情村评分员1"
    assert by_name["和美村"][10] is None  # nobody stands out
    assert summary[-1][0] == "合计"
    assert summary[-1][2] == 12  # participating households across the three villages
