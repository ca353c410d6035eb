"""The shop across New Year and through a year's veto: last year's approved rules stay in force
for reading and redeeming until the new year's take effect, and a policy says whether a
household vetoed for the year may still redeem."""

from collections.abc import Callable
from datetime import date, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import (
    Household,
    HouseholdPeriodScore,
    PeriodKind,
    PeriodStatus,
    Role,
    RuleSet,
    ScoringPeriod,
    Village,
    YearEndClose,
)
from app.rule_templates import templates
from app.schemas.rules import Policy, RedemptionPolicy, RedemptionWindow, VetoScope
from app.timeutil import SHANGHAI
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.ledger.conftest import balance_of, post_entry
from tests.shop.conftest import API, create_item, create_shop, snapshot

YEAR = 2031
JIUXIAN = Policy(
    carry_over=True,
    redemption=RedemptionPolicy(window=RedemptionWindow(months=[1, 4, 7, 10])),
)


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI)


async def test_january_redeems_the_fourth_quarter_under_last_years_rules(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    """Item 4: 旧县 on 10 January, before next year's rules are approved: the household reads
    the rules and redeems its carried-over points; opening a new-year period still needs the
    new year's rules."""
    village = await f.create_village(db)
    await f.create_rule_set(db, village, year=YEAR, policy=JIUXIAN)
    shop = await create_shop(db, village)
    soap = await create_item(db, shop)
    household = await f.create_household(db, village)
    villager = await f.create_person(db, village)
    await f.add_member(db, household, villager, is_head=True)
    await post_entry(db, household, 50, year=YEAR)
    db.add(
        YearEndClose(
            village_id=village.id, year=YEAR, carried_over=True, households_expired=0,
            points_expired=0,
        )
    )  # fmt: skip
    await db.flush()
    headers = await f.login_headers(db, settings, villager)
    set_clock(at(date(YEAR + 1, 1, 10)))

    rules = await client.get(f"{API}/villages/{village.id}/rules", headers=headers)
    assert rules.status_code == 200, rules.text
    assert rules.json()["year"] == YEAR
    ordered = await client.post(
        f"{API}/shops/{shop.id}/orders",
        json={"lines": [{"item_id": str(soap.id), "quantity": 1}]},
        headers=headers,
    )
    assert ordered.status_code == 201, ordered.text
    assert await balance_of(db, household.id) == 30

    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    opened = await client.post(
        f"{API}/villages/{village.id}/periods",
        json={"starts_on": f"{YEAR + 1}-01-01"},
        headers=await f.login_headers(db, settings, admin),
    )
    assert_problem(opened, 409, "period.no_rules")


async def test_a_household_vetoed_for_the_year_does_not_redeem_where_the_policy_says_so(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    """Item 9: 张堰 names no minimum score, top N or tiers, and cancels a vetoed household's
    year: its template says vetoed households do not redeem."""
    zhangyan = templates()["zhangyan-governance-2024"].policy
    assert zhangyan.veto_scope is VetoScope.YEAR
    assert zhangyan.redemption.vetoed_may_redeem is False
    village = await f.create_village(db)
    rule_set, _, _ = await f.create_rule_set(db, village, year=YEAR, policy=zhangyan)
    shop = await create_shop(db, village)
    soap = await create_item(db, shop)
    vetoed, heads = await _one_vetoed_in_march(db, settings, village, rule_set)
    set_clock(at(date(YEAR, 6, 15)))
    before = await snapshot(db, vetoed)

    body = {"lines": [{"item_id": str(soap.id), "quantity": 1}]}
    refused = await client.post(f"{API}/shops/{shop.id}/orders", json=body, headers=heads[0])

    assert_problem(refused, 409, "shop.vetoed_for_year")
    assert await snapshot(db, vetoed) == before
    allowed = await client.post(f"{API}/shops/{shop.id}/orders", json=body, headers=heads[1])
    assert allowed.status_code == 201, allowed.text


@pytest.mark.parametrize("may_redeem", [False, True])
async def test_the_catalog_tells_a_household_vetoed_for_the_year_why(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
    may_redeem: bool,
) -> None:
    """The catalog reads the year's veto in its own statement (app.services.shop.list_items):
    it refuses what an order would, and only where the policy says so."""
    zhangyan = templates()["zhangyan-governance-2024"].policy
    policy = zhangyan.model_copy(
        update={
            "redemption": zhangyan.redemption.model_copy(update={"vetoed_may_redeem": may_redeem})
        }
    )
    village = await f.create_village(db)
    rule_set, _, _ = await f.create_rule_set(db, village, year=YEAR, policy=policy)
    shop = await create_shop(db, village)
    await create_item(db, shop)
    vetoed, heads = await _one_vetoed_in_march(db, settings, village, rule_set)
    set_clock(at(date(YEAR, 6, 15)))

    def refusals(response: httpx.Response) -> set[tuple[bool, str | None]]:
        assert response.status_code == 200, response.text
        return {(i["redeemable_now"], i["refusal_code"]) for i in response.json()}

    items = f"{API}/shops/{shop.id}/items"
    expected = (True, None) if may_redeem else (False, "shop.vetoed_for_year")
    assert refusals(await client.get(items, headers=heads[0])) == {expected}
    assert refusals(await client.get(items, headers=heads[1])) == {(True, None)}


async def _one_vetoed_in_march(
    db: AsyncSession, settings: Settings, village: Village, rule_set: RuleSet
) -> tuple[Household, list[dict[str, str]]]:
    """Two households with 60 points each, the first vetoed in March's published results:
    that household, and the heads' login headers (vetoed first, then the neighbour)."""
    vetoed, neighbour = [await f.create_household(db, village) for _ in range(2)]
    heads = []
    for home in (vetoed, neighbour):
        person = await f.create_person(db, village)
        await f.add_member(db, home, person, is_head=True)
        heads.append(await f.login_headers(db, settings, person))
        await post_entry(db, home, 60, year=YEAR)
    march = ScoringPeriod(
        village_id=village.id, town_id=village.town_id, rule_set_id=rule_set.id, year=YEAR,
        kind=PeriodKind.MONTH, number=3, starts_on=date(YEAR, 3, 1), ends_on=date(YEAR, 3, 31),
        status=PeriodStatus.PUBLISHED,
    )  # fmt: skip
    db.add(march)
    await db.flush()
    db.add(
        HouseholdPeriodScore(
            household_id=vetoed.id, period_id=march.id, village_id=village.id, score=0,
            vetoed=True,
        )
    )  # fmt: skip
    await db.flush()
    return vetoed, heads
