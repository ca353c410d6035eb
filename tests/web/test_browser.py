"""Each staff role signs in and does its main task in headless Chromium; the database is
checked afterwards. The tests share one served demo village (新秀村) and each leaves what it
did there, so they touch different rows: a new period, one claim, one household's order."""

import io
import os
import uuid
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select, update
from sqlmodel import col

from app import clock
from app.config import Settings
from app.db import create_sessionmaker
from app.models import (
    Claim,
    ClaimStatus,
    Household,
    HouseholdBalance,
    HouseholdMember,
    LedgerEntry,
    LedgerKind,
    LoginSession,
    Objection,
    ObjectionStatus,
    OrderStatus,
    Outcome,
    Participation,
    PeriodStatus,
    Person,
    Photo,
    Role,
    Scorecard,
    ScorecardLine,
    ScoringPeriod,
    Shop,
    ShopItem,
    ShopOrder,
    Town,
    Village,
)
from app.schemas.objections import ObjectionCreate
from app.schemas.scorecards import ScorecardLineWrite, ScorecardWrite
from app.security import Grant, Principal, hash_password
from app.services import scorecards
from app.services.objections import filing
from app.services.shop_codes import pay_code
from tests.web.conftest import NOW, SCREENS, SECRET, WebServer

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}
PASSWORD = "demo1234"


async def sign_in(browser: Any, server: WebServer, username: str, viewport: dict[str, int]) -> Any:
    context = await browser.new_context(viewport=viewport, base_url=server.base_url)
    page = await context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto("/web/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/web/")
    return page


async def shoot(page: Any, name: str) -> None:
    """With WEB_SCREENSHOTS=1, the page at phone and desktop size for the README."""
    if os.environ.get("WEB_SCREENSHOTS") != "1":
        return
    SCREENS.mkdir(parents=True, exist_ok=True)
    for size, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        await page.set_viewport_size(viewport)
        await page.wait_for_timeout(300)
        await page.screenshot(path=SCREENS / f"{name}-{size}.png")


async def scalar(server: WebServer, statement: Any) -> Any:
    async with server.engine.connect() as conn:
        return (await conn.execute(statement)).scalar_one_or_none()


async def village(server: WebServer, name: str = "新秀村") -> Village:
    async with server.engine.connect() as conn:
        row = (await conn.execute(select(Village).where(col(Village.name) == name))).one()
        return Village.model_validate(row._mapping)


def photo_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (800, 600), (90, 140, 60)).save(out, "PNG")
    return out.getvalue()


async def test_a_period_from_opening_to_publication(browser: Any, web_server: WebServer) -> None:
    """The village admin opens June, the scorer scores a card with a photo on the phone, the
    rest of the cards come from the API's service, and the admin submits, approves, publishes."""
    home = await village(web_server)
    admin = await sign_in(browser, web_server, "xinxiu-admin", DESKTOP)
    await admin.click(f"a[href='/web/villages/{home.id}/admin']")
    assert await admin.input_value("input[name=starts_on]") == "2026-06-01"
    await admin.click("text=开启周期")
    await admin.wait_for_selector("text=2026年第6期")
    period_id = await scalar(
        web_server,
        select(col(ScoringPeriod.id)).where(
            col(ScoringPeriod.village_id) == home.id, col(ScoringPeriod.number) == 6
        ),
    )
    assert period_id is not None

    scorer = await sign_in(browser, web_server, "xinxiu-scorer", PHONE)
    await scorer.click(f"a[href='/web/villages/{home.id}/scoring']")
    await shoot(scorer, "scoring")
    await scorer.click(f"a[href='/web/periods/{period_id}/worklist']")
    await shoot(scorer, "worklist")
    first = scorer.locator("ul.cards a.card-link").first
    household_id = uuid.UUID((await first.get_attribute("href") or "").rsplit("/", 1)[1])
    await first.click()
    items = scorer.locator("fieldset.item")
    count = await items.count()
    assert count > 3
    for n in range(count):
        await items.nth(n).locator("input[value=compliant]").check()
    finding = items.nth(0)
    await finding.locator("input[value=finding]").check()
    await finding.locator("input[name^=note-]").fill("门前堆放杂物")
    await finding.locator("input[type=file]").set_input_files(
        {"name": "phone.png", "mimeType": "image/png", "buffer": photo_bytes()}
    )
    await finding.locator(".photos img").wait_for()
    # Nothing saved yet: the phone keeps the draft, and a reload (a lost tab) restores it.
    await scorer.reload()
    await scorer.locator("#draft-restored").wait_for()
    assert await finding.locator("input[value=finding]").is_checked()
    assert await finding.locator("input[name^=note-]").input_value() == "门前堆放杂物"
    await finding.locator(".photos img").wait_for()
    await shoot(scorer, "card")
    await scorer.click("text=保存评分")
    await scorer.wait_for_selector("text=已保存")
    assert await scorer.locator("#draft-restored").is_hidden()

    async with web_server.engine.connect() as conn:
        card = (
            await conn.execute(
                select(Scorecard).where(
                    col(Scorecard.period_id) == period_id,
                    col(Scorecard.household_id) == household_id,
                )
            )
        ).one()
        lines = (
            await conn.execute(
                select(ScorecardLine).where(col(ScorecardLine.scorecard_id) == card.id)
            )
        ).all()
        scorer_id = (
            await conn.execute(select(Person.id).where(col(Person.username) == "xinxiu-scorer"))
        ).scalar_one()
        photos = (
            await conn.execute(select(Photo).where(col(Photo.uploader_id) == scorer_id))
        ).all()
    assert card.scorer_id == scorer_id
    assert len(lines) == count
    findings = [line for line in lines if line.outcome == Outcome.FINDING]
    assert len(findings) == 1
    assert findings[0].note == "门前堆放杂物"
    assert findings[0].photos == [str(photos[0].id)]
    assert len(photos) == 1

    # The other households' cards, as the API saves them, so the period can be submitted.
    async with web_server.engine.connect() as conn:
        district = (
            await conn.execute(select(Person.id).where(col(Person.username) == "district"))
        ).scalar_one()
    district_admin = Principal(
        person_id=district,
        session_id=uuid.uuid4(),
        grants=(Grant(Role.DISTRICT_ADMIN, None, None),),
    )
    async with create_sessionmaker(web_server.engine)() as session, session.begin():
        with clock.frozen(NOW):
            work = await scorecards.worklist(session, district_admin, period_id)
            cards = [
                (
                    h.household_id,
                    ScorecardWrite(
                        id=uuid.uuid4(),
                        lines=[
                            ScorecardLineWrite(
                                id=uuid.uuid4(), rule_item_id=i.id, outcome=Outcome.COMPLIANT
                            )
                            for i in work.items
                        ],
                    ),
                )
                for h in work.households
                if h.household_id != household_id
            ]
            await scorecards.save_cards(session, district_admin, period_id, cards)

    await admin.reload()
    await shoot(admin, "village-admin")
    for step, status in (
        ("提交评分结果", PeriodStatus.SUBMITTED),
        ("两委审定并记分", PeriodStatus.APPROVED),
        ("公示", PeriodStatus.PUBLISHED),
    ):
        await admin.locator(f"#period-{period_id} button", has_text=step).click()
        await admin.wait_for_load_state()
        await (
            admin.locator(f"#period-{period_id}")
            .get_by_text(
                {"submitted": "已提交", "approved": "已审定", "published": "公示中"}[status.value]
            )
            .wait_for()
        )
        assert (
            await scalar(
                web_server,
                select(col(ScoringPeriod.status)).where(col(ScoringPeriod.id) == period_id),
            )
            == status
        )
    households_posted = await scalar(
        web_server,
        select(func.count(func.distinct(col(LedgerEntry.household_id)))).where(
            col(LedgerEntry.period_id) == period_id, col(LedgerEntry.kind) == LedgerKind.INSPECTION
        ),
    )
    assert households_posted == len(cards) + 1
    await admin.locator(f"#period-{period_id} a", has_text="结果").click()
    await admin.wait_for_selector("text=评分结果")
    await shoot(admin, "results")


async def test_the_leader_rejects_only_with_a_reason_and_approves(
    browser: Any, web_server: WebServer
) -> None:
    home = await village(web_server)
    leader = await sign_in(browser, web_server, "xinxiu-leader", PHONE)
    await leader.click(f"a[href='/web/villages/{home.id}/scoring']")
    await leader.click("text=待审核的申报")
    await shoot(leader, "claims")
    claim = leader.locator("article.claim").first
    claim_id = uuid.UUID((await claim.get_attribute("id") or "")[len("claim-") :])

    # htmx posts the decision and shows the refusal in place; the form stays.
    await claim.locator("button", has_text="驳回").click()
    await claim.locator("[data-code='claim.reason_required']").wait_for()
    status = select(col(Claim.status)).where(col(Claim.id) == claim_id)
    assert await scalar(web_server, status) == ClaimStatus.PENDING

    await leader.locator(f"#claim-{claim_id} button", has_text="通过").click()
    await leader.locator(f"#claim-{claim_id}.decided").wait_for()
    assert "已通过" in await leader.inner_text(f"#claim-{claim_id}")
    await leader.reload()
    assert await leader.locator(f"#claim-{claim_id}").count() == 0
    assert await scalar(web_server, status) == ClaimStatus.APPROVED
    bonus = select(func.count()).where(
        col(LedgerEntry.source_id) == claim_id, col(LedgerEntry.kind) == LedgerKind.BONUS
    )
    assert await scalar(web_server, bonus) == 1


async def test_the_attendant_redeems_a_pay_code(browser: Any, web_server: WebServer) -> None:
    home = await village(web_server)
    async with web_server.engine.connect() as conn:
        shop = (await conn.execute(select(Shop).where(col(Shop.village_id) == home.id))).one()
        item = (
            await conn.execute(
                select(ShopItem)
                .where(col(ShopItem.shop_id) == shop.id, col(ShopItem.stock).is_not(None))
                .order_by(col(ShopItem.price_points))
                .limit(1)
            )
        ).one()
        staff_homes = (
            select(col(HouseholdMember.household_id))
            .join(Person, col(Person.id) == col(HouseholdMember.person_id))
            .where(col(Person.username).is_not(None))
        )
        household_id, balance = (
            await conn.execute(
                select(col(Household.id), col(HouseholdBalance.balance))
                .join(HouseholdBalance, col(HouseholdBalance.household_id) == col(Household.id))
                .where(
                    col(Household.village_id) == home.id,
                    col(Household.participation) == Participation.ACTIVE,
                    col(Household.id).not_in(staff_homes),
                    col(HouseholdBalance.balance) >= item.price_points,
                )
                .order_by(col(Household.number).desc())
                .limit(1)
            )
        ).one()
    code, _ = pay_code(Settings(jwt_secret=SECRET), shop.id, household_id, now=NOW)

    attendant = await sign_in(browser, web_server, "xinxiu-shop", PHONE)
    await attendant.click(f"a[href='/web/shops/{shop.id}/counter']")
    await shoot(attendant, "counter")
    await attendant.fill("#scan-code", code)
    await attendant.click("text=查询")
    await attendant.wait_for_selector("#scanned")
    assert str(balance) in await attendant.inner_text("#scanned")
    await attendant.fill(f"input[name='qty-{item.id}']", "1")
    await shoot(attendant, "scanned")
    await attendant.click("text=确认兑换")
    await attendant.wait_for_selector("#done")
    assert "1 笔" in await attendant.inner_text("main")
    await shoot(attendant, "redeemed")

    async with web_server.engine.connect() as conn:
        order = (
            await conn.execute(
                select(ShopOrder).where(
                    col(ShopOrder.household_id) == household_id,
                    col(ShopOrder.status) == OrderStatus.COLLECTED,
                )
            )
        ).one()
        stock = (
            await conn.execute(select(col(ShopItem.stock)).where(col(ShopItem.id) == item.id))
        ).scalar_one()
        after = (
            await conn.execute(
                select(col(HouseholdBalance.balance)).where(
                    col(HouseholdBalance.household_id) == household_id
                )
            )
        ).scalar_one()
    assert order.points == item.price_points
    assert stock == item.stock - 1
    assert after == balance - item.price_points

    # The same code again is refused and nothing more is spent.
    await attendant.goto(f"/web/shops/{shop.id}/counter")
    await attendant.fill("#scan-code", code)
    await attendant.click("text=查询")
    await attendant.wait_for_selector("[data-code='shop.code_replayed']")


async def file_objections(
    server: WebServer, home: Village
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """Two villagers of the home village object to their May score (published by the demo on
    NOW, so its window is open) through the API's service, one of them over a finding on their
    card. Returns that objection, the finding's item and the other objection."""
    async with server.engine.connect() as conn:
        may = (
            await conn.execute(
                select(col(ScoringPeriod.id)).where(
                    col(ScoringPeriod.village_id) == home.id, col(ScoringPeriod.number) == 5
                )
            )
        ).scalar_one()
        finding = (
            await conn.execute(
                select(col(ScorecardLine.rule_item_id), col(Scorecard.household_id))
                .join(Scorecard, col(Scorecard.id) == col(ScorecardLine.scorecard_id))
                .where(
                    col(Scorecard.period_id) == may,
                    col(ScorecardLine.outcome) == Outcome.FINDING,
                    col(ScorecardLine.points) == 0,
                )
                .order_by(col(Scorecard.household_id))
                .limit(1)
            )
        ).one()
        other = (
            await conn.execute(
                select(col(Household.id))
                .where(col(Household.village_id) == home.id, col(Household.id) != finding[1])
                .order_by(col(Household.number).desc())
                .limit(1)
            )
        ).scalar_one()
        members = dict(
            (
                await conn.execute(
                    select(col(HouseholdMember.household_id), col(HouseholdMember.person_id))
                    .where(col(HouseholdMember.household_id).in_([finding[1], other]))
                    .order_by(col(HouseholdMember.is_head))
                )
            ).all()
        )
    filed = []
    async with create_sessionmaker(server.engine)() as session, session.begin():
        with clock.frozen(NOW):
            for household_id, reason in (
                (finding[1], "门前杂物当天已清理，有照片为证"),
                (other, "本月参加了两次义务劳动，得分偏低"),
            ):
                villager = Principal(
                    person_id=members[household_id],
                    session_id=uuid.uuid4(),
                    household_id=household_id,
                    household_village_id=home.id,
                    village_towns={home.id: home.town_id},
                )
                data = ObjectionCreate(period_id=may, reason=reason)
                filed.append((await filing.file(session, villager, data)).id)
    return filed[0], finding[0], filed[1]


async def test_the_village_admin_rules_on_objections(browser: Any, web_server: WebServer) -> None:
    """The working group's queue on the admin's page: a dismissal needs a reason; upholding
    with the finding re-scored as compliant corrects the score through the ledger."""
    home = await village(web_server)
    upheld_id, item_id, dismissed_id = await file_objections(web_server, home)
    admin = await sign_in(browser, web_server, "xinxiu-admin", PHONE)
    await admin.click(f"a[href='/web/villages/{home.id}/admin']")
    await admin.locator(f"#objection-{upheld_id}").wait_for()
    assert await admin.locator("#objections article").count() == 2
    assert "门前杂物当天已清理" in await admin.inner_text(f"#objection-{upheld_id}")
    assert "评分人" in await admin.inner_text(f"#objection-{upheld_id}")
    await admin.locator("#ranking-rows tbody tr").first.wait_for()
    await admin.locator(f"#objection-{upheld_id}").scroll_into_view_if_needed()
    await shoot(admin, "objections")

    objection = select(Objection).where(col(Objection.id) == dismissed_id)
    dismissed = admin.locator(f"#objection-{dismissed_id}")
    # The browser itself refuses an empty reason (required); the server does too, unenhanced.
    await dismissed.locator("textarea[name=reason]").evaluate("t => t.removeAttribute('required')")
    await dismissed.locator("textarea[name=reason]").fill("   ")
    await dismissed.locator("button", has_text="驳回").click()
    await admin.wait_for_selector("[data-code='web.ruling_invalid']")
    async with web_server.engine.connect() as conn:
        assert (await conn.execute(objection)).one().status == ObjectionStatus.OPEN
    await admin.goto(f"/web/villages/{home.id}/admin")

    dismissed = admin.locator(f"#objection-{dismissed_id}")
    await dismissed.locator("textarea[name=reason]").fill("经核实，义务劳动已另行加分")
    await dismissed.locator("button", has_text="驳回").click()
    await admin.locator(f"#objection-{dismissed_id}").wait_for(state="detached")
    upheld = admin.locator(f"#objection-{upheld_id}")
    await upheld.locator("summary").click()
    await upheld.locator(f"select[name=line-{item_id}]").select_option("compliant")
    await upheld.locator("textarea[name=reason]").fill("照片显示已清理，该项改为达标")
    await upheld.locator("button", has_text="维持异议").click()
    await admin.locator(f"#objection-{upheld_id}").wait_for(state="detached")
    assert "没有待处理的异议" in await admin.inner_text("#objections")

    async with web_server.engine.connect() as conn:
        ruled = (await conn.execute(objection)).one()
        assert ruled.status == ObjectionStatus.DISMISSED
        assert ruled.ruling_reason == "经核实，义务劳动已另行加分"
        assert ruled.escalation_closes_on is not None
        corrected = (
            await conn.execute(select(Objection).where(col(Objection.id) == upheld_id))
        ).one()
        reversals = (
            await conn.execute(
                select(func.count()).where(
                    col(LedgerEntry.source_type) == "objection",
                    col(LedgerEntry.source_id) == upheld_id,
                )
            )
        ).scalar_one()
    assert corrected.status == ObjectionStatus.UPHELD
    assert corrected.ruling_reason == "照片显示已清理，该项改为达标"
    assert [line["rule_item_id"] for line in corrected.amended_lines] == [str(item_id)]
    assert corrected.score_after > corrected.score_before
    assert reversals >= 1


async def test_the_town_console_shows_the_villages_side_by_side(
    browser: Any, web_server: WebServer
) -> None:
    """The console's table reads the town dashboard: its figures are what the tables hold."""
    active = col(Household.participation) == Participation.ACTIVE
    eligible = (col(Household.participation) != Participation.LEFT) & col(Household.has_resident)
    async with web_server.engine.connect() as conn:
        town_id = (await conn.execute(select(col(Town.id)))).scalar_one()
        expected = {
            name: (participating, eligible_count)
            for name, participating, eligible_count in await conn.execute(
                select(
                    col(Village.name),
                    func.count(col(Household.id)).filter(active),
                    func.count(col(Household.id)).filter(eligible),
                )
                .outerjoin(Household, col(Household.village_id) == col(Village.id))
                .group_by(col(Village.name))
            )
        }
        pending = dict(
            (
                await conn.execute(
                    select(col(Village.name), func.count(col(Claim.id)))
                    .join(Claim, col(Claim.village_id) == col(Village.id))
                    .where(col(Claim.status) == ClaimStatus.PENDING)
                    .group_by(col(Village.name))
                )
            ).all()
        )
        owed = dict(
            (
                await conn.execute(
                    select(col(Village.name), func.sum(col(HouseholdBalance.balance)))
                    .join(HouseholdBalance, col(HouseholdBalance.village_id) == col(Village.id))
                    .group_by(col(Village.name))
                )
            ).all()
        )
    supervisor = await sign_in(browser, web_server, "zhangyan", DESKTOP)
    await supervisor.click(f"a[href='/web/towns/{town_id}']")
    rows = supervisor.locator("#villages tbody tr")
    assert await rows.count() == len(expected)
    for n in range(len(expected)):
        cells = await rows.nth(n).locator("td").all_inner_texts()
        name = cells[0]
        assert (int(cells[1]), int(cells[2])) == expected[name], name
        assert int(cells[7]) == pending.get(name, 0), name
        assert int(cells[11].split("（")[0]) == owed.get(name, 0), name
    assert sum(expected[name][0] for name in expected) > 0
    for chart in ("participation", "lateness", "spread", "claims", "objections", "money"):
        await supervisor.locator(f"#chart-{chart} canvas").wait_for()
    await supervisor.locator("#town-ranking-rows").wait_for()
    await shoot(supervisor, "town")

    # Drilling into a village: the village dashboard and its pending claims.
    home = await village(web_server)
    await supervisor.click(f"a[href='/web/villages/{home.id}/overview']")
    await supervisor.locator("#pending-claims").wait_for()
    listed = await supervisor.locator("#pending-claims tbody tr").count()
    assert listed == max(1, pending.get(home.name, 0))
    assert int(await supervisor.inner_text("#outstanding")) == owed.get(home.name, 0)
    assert await supervisor.locator("#period-figures tbody tr").count() >= 2
    await shoot(supervisor, "village-overview")


async def test_who_may_not_reach_the_pages(browser: Any, web_server: WebServer) -> None:
    home = await village(web_server)
    async with web_server.engine.connect() as conn:
        town_id = (await conn.execute(select(col(Town.id)))).scalar_one()
        shop_id = (
            await conn.execute(select(col(Shop.id)).where(col(Shop.village_id) == home.id))
        ).scalar_one()

    # Not signed in: the sign-in page.
    context = await browser.new_context(base_url=web_server.base_url)
    anonymous = await context.new_page()
    await anonymous.goto(f"/web/villages/{home.id}/admin")
    assert anonymous.url.endswith("/web/login")
    await shoot(anonymous, "login")

    # A villager with a password is still not staff.
    async with web_server.engine.begin() as conn:
        villager = (
            await conn.execute(
                select(col(Person.id))
                .join(HouseholdMember, col(HouseholdMember.person_id) == col(Person.id))
                .where(col(Person.username).is_(None))
                .limit(1)
            )
        ).scalar_one()
        await conn.execute(
            update(Person)
            .where(col(Person.id) == villager)
            .values(username="web-villager", password_hash=hash_password(PASSWORD))
        )
    page = await (await browser.new_context(base_url=web_server.base_url)).new_page()
    await page.goto("/web/login")
    await page.fill("input[name=username]", "web-villager")
    await page.fill("input[name=password]", PASSWORD)
    response_status: list[int] = []
    page.on("response", lambda r: response_status.append(r.status))
    await page.click("button[type=submit]")
    await page.wait_for_selector("[data-code='web.staff_only']")
    assert 403 in response_status

    # Another village's admin: the village and its shop are not found; a scorer is no
    # supervisor.
    other = await sign_in(browser, web_server, "qinwang-admin", DESKTOP)
    for url in (f"/web/villages/{home.id}/admin", f"/web/shops/{shop_id}/stock"):
        response = await other.goto(url)
        assert response.status == 404, url
    scorer = await sign_in(browser, web_server, "xinxiu-scorer", PHONE)
    response = await scorer.goto(f"/web/towns/{town_id}")
    assert response.status == 403
    response = await scorer.goto(f"/web/shops/{shop_id}/counter")
    assert response.status == 403

    # The session cookie, and a form posted without the CSRF token changes nothing.
    admin = await sign_in(browser, web_server, "xinxiu-admin", DESKTOP)
    cookie = next(c for c in await admin.context.cookies() if c["name"] == "vp_web")
    assert cookie["httpOnly"]
    assert cookie["secure"]
    assert cookie["sameSite"] == "Lax"
    period = select(col(ScoringPeriod.id), col(ScoringPeriod.status)).where(
        col(ScoringPeriod.village_id) == home.id
    )
    async with web_server.engine.connect() as conn:
        before = (await conn.execute(period)).all()
    forged = await admin.context.request.post(
        f"/web/villages/{home.id}/periods", form={"starts_on": "2026-07-01"}, max_redirects=0
    )
    assert forged.status == 403
    assert "web.csrf_invalid" in await forged.text()
    async with web_server.engine.connect() as conn:
        assert (await conn.execute(period)).all() == before

    # Signing out ends the login session itself.
    await admin.click("text=退出登录")
    await admin.wait_for_url("**/web/login")
    await admin.goto(f"/web/villages/{home.id}/admin")
    assert admin.url.endswith("/web/login")
    admin_id = select(col(Person.id)).where(col(Person.username) == "xinxiu-admin")
    revoked = select(func.count()).where(
        col(LoginSession.person_id).in_(admin_id), col(LoginSession.revoked_reason) == "logout"
    )
    assert await scalar(web_server, revoked) == 1


def y4m_showing(text: str, path: Any) -> None:
    """A short video of a QR code, in the raw format Chromium's fake camera plays in a loop."""
    import segno

    qr = io.BytesIO()
    segno.make(text, error="m").save(qr, kind="png", scale=6, border=4)
    code = Image.open(qr).convert("L")
    frame = Image.new("L", (640, 480), 255)
    frame.paste(code, ((640 - code.width) // 2, (480 - code.height) // 2))
    y = frame.tobytes()
    chroma = bytes([128]) * (320 * 240)
    with open(path, "wb") as out:
        out.write(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n")
        for _ in range(10):
            out.write(b"FRAME\n" + y + chroma + chroma)


async def test_the_camera_reads_a_pickup_code(
    chromium_path: str, web_server: WebServer, tmp_path: Any
) -> None:
    """The vendored QR reader scans an order's pickup code from the (fake) camera and the
    attendant hands the order over."""
    from playwright.async_api import async_playwright

    from app.services.shop_codes import pickup_code

    home = await village(web_server)
    async with web_server.engine.connect() as conn:
        order = (
            await conn.execute(
                select(ShopOrder).where(
                    col(ShopOrder.village_id) == home.id,
                    col(ShopOrder.status) == OrderStatus.RESERVED,
                )
            )
        ).one()
    video = tmp_path / "camera.y4m"
    y4m_showing(pickup_code(Settings(jwt_secret=SECRET), order.shop_id, order.id), video)
    async with async_playwright() as playwright:
        camera_browser = await playwright.chromium.launch(
            executable_path=chromium_path,
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={video}",
            ],
        )
        try:
            attendant = await sign_in(camera_browser, web_server, "xinxiu-shop", PHONE)
            await attendant.click(f"a[href='/web/shops/{order.shop_id}/counter']")
            await attendant.click("text=打开摄像头扫码")
            await attendant.wait_for_selector("#scanned, .error", timeout=30_000)
            assert not await attendant.locator(".error").count(), await attendant.inner_text("main")
            assert "取货码" in await attendant.inner_text("#scanned")
            await attendant.click("text=确认交付")
            await attendant.wait_for_selector("#done")
        finally:
            await camera_browser.close()
    status = select(col(ShopOrder.status)).where(col(ShopOrder.id) == order.id)
    assert await scalar(web_server, status) == OrderStatus.COLLECTED
