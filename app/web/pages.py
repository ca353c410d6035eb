"""The staff web's pages: HTTP only, on the API's own services, scope checks and per-request
transaction. Nothing here reads or writes a table the services do not."""

import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile

from app import clock
from app.config import Settings
from app.db import SessionDep
from app.errors import NotFound, Unprocessable
from app.models import (
    ClaimStatus,
    Outcome,
    PeriodStatus,
    ReviewDecision,
    Role,
    RulingDecision,
    StockChange,
)
from app.pagination import MAX_LIMIT, PageParams
from app.schemas.claims import ReviewCreate
from app.schemas.objections import AmendedLine, RulingCreate
from app.schemas.periods import PeriodRead, PeriodResults
from app.schemas.scorecards import ScorecardLineWrite, ScorecardRead, ScorecardWrite
from app.schemas.shop import CounterRedemptionCreate, OrderLineCreate, StockChangeCreate
from app.schemas.supervision import TownDashboard, VillageDashboard
from app.security import Principal
from app.services import auth as auth_service
from app.services import claims as claims_service
from app.services import organisation, shop_orders, shop_reports
from app.services import periods as periods_service
from app.services import photos as photos_service
from app.services import scorecards as scorecards_service
from app.services import shop as shop_service
from app.services.objections import ruling as objection_ruling
from app.services.points_year import quarter_number
from app.services.supervision import dashboard
from app.storage import photo_store
from app.web import sections
from app.web.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    check_csrf,
    clear_session,
    csrf_token,
    keep_csrf_cookie,
    staff,
    start_session,
    web_principal,
)

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")

SCORING_ROLES = (Role.VILLAGE_ADMIN, Role.SCORING_LEADER, Role.SCORER)
REVIEWERS = (Role.SCORING_LEADER, Role.SCORER)
COUNTER_ROLES = (Role.VILLAGE_ADMIN, Role.SHOP_ATTENDANT)

Staff = Annotated[Principal, Depends(web_principal)]
Scoring = Annotated[Principal, staff(*SCORING_ROLES)]
Reviewer = Annotated[Principal, staff(*REVIEWERS)]
Counter = Annotated[Principal, staff(*COUNTER_ROLES)]
VillageAdmin = Annotated[Principal, staff(Role.VILLAGE_ADMIN)]
Supervisor = Annotated[Principal, staff(Role.TOWN_SUPERVISOR)]
Overseer = Annotated[Principal, staff(Role.TOWN_SUPERVISOR, Role.VILLAGE_ADMIN)]
AnyStaff = Annotated[Principal, staff(*Role)]

router = APIRouter(prefix="/web", include_in_schema=False)

PERIOD_STATUS = {
    PeriodStatus.OPEN: "待评分",
    PeriodStatus.SCORING: "评分中",
    PeriodStatus.SUBMITTED: "已提交",
    PeriodStatus.APPROVED: "已审定",
    PeriodStatus.PUBLISHED: "公示中",
    PeriodStatus.CLOSED: "已结束",
}
CARD_STATUS = {"none": "未评", "partial": "未评完", "complete": "已评"}
ROLE_NAMES = {
    Role.DISTRICT_ADMIN: "区级管理员",
    Role.TOWN_SUPERVISOR: "镇级督导",
    Role.VILLAGE_ADMIN: "村管理员",
    Role.SCORING_LEADER: "评分组长",
    Role.SCORER: "评分员",
    Role.SHOP_ATTENDANT: "超市管理员",
}
# What the village admin may do next with a period, by its status.
PERIOD_ACTIONS = {
    PeriodStatus.OPEN: ("submit", "提交评分结果"),
    PeriodStatus.SCORING: ("submit", "提交评分结果"),
    PeriodStatus.SUBMITTED: ("approve", "两委审定并记分"),
    PeriodStatus.APPROVED: ("publish", "公示"),
}


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "csrf": csrf_token(request),
            "csrf_field": CSRF_FIELD,
            "csrf_header": CSRF_HEADER,
            "period_status": PERIOD_STATUS,
            **context,
        },
        status_code=status_code,
    )
    keep_csrf_cookie(request, response)
    # Staff pages act with the signed-in person's authority: never inside another site's frame.
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    response.headers["Cache-Control"] = "no-store"
    return response


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# Signing in and out


@router.get("/login")
async def login_page(request: Request) -> Response:
    return render(request, "login.html")


@router.post("/login", dependencies=[Depends(check_csrf)])
async def login(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=200)],
) -> Response:
    address = request.client.host if request.client else "unknown"
    settings = _settings(request)
    tokens = await auth_service.password_login(session, settings, username, password, address)
    response = see_other("/web/")
    await start_session(session, response, settings, tokens)
    return response


@router.post("/logout")
async def logout(session: SessionDep, principal: AnyStaff) -> Response:
    await auth_service.logout(session, principal)
    response = see_other("/web/login")
    clear_session(response)
    return response


@router.get("/")
async def home(request: Request, session: SessionDep, principal: Staff) -> Response:
    """Where each of the caller's roles works, one card a role and place."""
    places: list[dict[str, str]] = []
    if principal.is_district_admin:
        towns, _ = await organisation.list_towns(session, principal, PageParams(limit=MAX_LIMIT))
        for town in towns:
            places.append({"role": "区级管理员", "name": town.name, "url": f"/web/towns/{town.id}"})
    for grant in principal.grants:
        role = ROLE_NAMES[grant.role]
        if grant.role is Role.TOWN_SUPERVISOR and grant.town_id:
            town = await organisation.get_town(session, principal, grant.town_id)
            places.append({"role": role, "name": town.name, "url": f"/web/towns/{town.id}"})
        if grant.village_id is None:
            continue
        village = await organisation.get_village(session, principal, grant.village_id)
        if grant.role is Role.VILLAGE_ADMIN:
            url = f"/web/villages/{village.id}/admin"
            places.append({"role": role, "name": village.name, "url": url})
        if grant.role in REVIEWERS:
            url = f"/web/villages/{village.id}/scoring"
            places.append({"role": role, "name": village.name, "url": url})
        if grant.role is Role.SHOP_ATTENDANT:
            for shop in await shop_service.list_shops(session, principal, village.id):
                if grant.shop_id in (None, shop.id):
                    url = f"/web/shops/{shop.id}/counter"
                    places.append({"role": role, "name": shop.name, "url": url})
    return render(request, "home.html", places=places)


# The scorer's phone


@router.get("/villages/{village_id}/scoring")
async def scoring(
    request: Request, session: SessionDep, principal: Scoring, village_id: uuid.UUID
) -> Response:
    village = await organisation.get_village(session, principal, village_id)
    periods = await periods_service.list_periods(session, principal, village.id, None)
    return render(
        request,
        "scoring.html",
        village=village,
        periods=list(reversed(periods)),
        reviewer=principal.has_role(*REVIEWERS),
    )


@router.get("/periods/{period_id}/worklist")
async def worklist(
    request: Request, session: SessionDep, principal: Scoring, period_id: uuid.UUID
) -> Response:
    period = await periods_service.get_period(session, principal, period_id)
    work = await scorecards_service.worklist(session, principal, period.id)
    done = sum(1 for h in work.households if h.card_status == "complete")
    return render(
        request,
        "worklist.html",
        period=period,
        work=work,
        done=done,
        card_status=CARD_STATUS,
    )


async def _card_or_none(
    session: SessionDep, principal: Principal, period_id: uuid.UUID, household_id: uuid.UUID
) -> ScorecardRead | None:
    try:
        return await scorecards_service.get_scorecard(session, principal, period_id, household_id)
    except NotFound as missing:
        if missing.code != "scorecard.not_found":
            raise
        return None


@router.get("/periods/{period_id}/households/{household_id}")
async def card_page(
    request: Request,
    session: SessionDep,
    principal: Scoring,
    period_id: uuid.UUID,
    household_id: uuid.UUID,
) -> Response:
    period = await periods_service.get_period(session, principal, period_id)
    work = await scorecards_service.worklist(session, principal, period.id)
    household = next((h for h in work.households if h.household_id == household_id), None)
    if household is None:
        raise NotFound("No such household in the worklist.", code="household.not_found")
    card = await _card_or_none(session, principal, period.id, household_id)
    lines = {line.rule_item_id: line for line in card.lines} if card else {}
    return render(
        request,
        "card.html",
        period=period,
        work=work,
        household=household,
        card=card,
        lines=lines,
        saved=request.query_params.get("saved") == "1",
    )


@router.post("/periods/{period_id}/households/{household_id}")
async def save_card(
    request: Request,
    session: SessionDep,
    principal: Scoring,
    period_id: uuid.UUID,
    household_id: uuid.UUID,
) -> Response:
    """The card form saved as the API's PUT saves it: the whole card, lines replaced."""
    form = await request.form(max_files=0, max_fields=2000)
    work = await scorecards_service.worklist(session, principal, period_id)
    card = await _card_or_none(session, principal, period_id, household_id)
    previous = {line.rule_item_id: line.id for line in card.lines} if card else {}
    try:
        body = ScorecardWrite(
            id=card.id if card else uuid.uuid4(),
            note=str(form.get("note", "")),
            lines=[
                ScorecardLineWrite(
                    id=previous.get(item.id, uuid.uuid4()),
                    rule_item_id=item.id,
                    outcome=Outcome(str(form[f"outcome-{item.id}"])),
                    note=str(form.get(f"note-{item.id}", "")),
                    photos=[str(p) for p in form.getlist(f"photos-{item.id}")],
                )
                for item in work.items
                if form.get(f"outcome-{item.id}") not in (None, "")
            ],
        )
    except ValueError as exc:  # pydantic's ValidationError included
        raise Unprocessable(
            "The card is not valid.", code="web.card_invalid", title="评分内容有误"
        ) from exc
    await scorecards_service.save_cards(session, principal, period_id, [(household_id, body)])
    return see_other(f"/web/periods/{period_id}/households/{household_id}?saved=1")


@router.post("/villages/{village_id}/photos")
async def upload_photo(
    request: Request, session: SessionDep, principal: Scoring, village_id: uuid.UUID
) -> JSONResponse:
    """One photo from the phone's camera, shrunk on the phone to fit the request limit."""
    settings = _settings(request)
    form = await request.form(max_files=1, max_fields=2)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Unprocessable("Send the photo in a field named file.", code="photo.missing_file")
    data = await upload.read()
    photo = await photos_service.upload(
        session,
        photo_store(settings),
        principal,
        data,
        village_id=village_id,
        max_pixels=settings.photo_max_pixels,
    )
    return JSONResponse({"id": str(photo.id), "thumbnail_url": f"/web/photos/{photo.id}?thumb=1"})


@router.get("/photos/{photo_id}")
async def photo(
    request: Request,
    session: SessionDep,
    principal: AnyStaff,
    photo_id: uuid.UUID,
    thumb: bool = False,
) -> Response:
    data, media_type = await photos_service.read(
        session, photo_store(_settings(request)), principal, photo_id, thumbnail=thumb
    )
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})


@router.get("/villages/{village_id}/claims")
async def claim_queue(
    request: Request, session: SessionDep, principal: Reviewer, village_id: uuid.UUID
) -> Response:
    village = await organisation.get_village(session, principal, village_id)
    listing = await claims_service.review_queue(
        session, principal, village.id, PageParams(limit=MAX_LIMIT), group_id=None, item_id=None
    )
    return render(request, "claims.html", village=village, claims=listing.claims)


@router.post("/claims/{claim_id}/review")
async def review_claim(
    request: Request,
    session: SessionDep,
    principal: Reviewer,
    claim_id: uuid.UUID,
    decision: Annotated[ReviewDecision, Form()],
    village_id: Annotated[uuid.UUID, Form()],
    comment: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    claim = await claims_service.review(
        session, principal, claim_id, ReviewCreate(decision=decision, comment=comment)
    )
    if request.headers.get("HX-Request"):
        [read] = await claims_service.claims_read(session, [claim])
        return render(request, "_claim_decided.html", claim=read, decision=decision)
    return see_other(f"/web/villages/{village_id}/claims")


# The shop attendant's phone


async def _counter(
    request: Request, session: SessionDep, principal: Principal, shop_id: uuid.UUID, **extra: Any
) -> Response:
    today = clock.today()
    shop, sheet = await shop_reports.sheet_lines(
        session, principal, shop_id, today, today + timedelta(days=1)
    )
    return render(
        request,
        "counter.html",
        shop=shop,
        sheet=sheet,
        sheet_points=sum(line.quantity * line.unit_points for line in sheet),
        today=today,
        **extra,
    )


@router.get("/shops/{shop_id}/counter")
async def counter(
    request: Request, session: SessionDep, principal: Counter, shop_id: uuid.UUID
) -> Response:
    return await _counter(request, session, principal, shop_id)


@router.post("/shops/{shop_id}/scan")
async def scan(
    request: Request,
    session: SessionDep,
    principal: Counter,
    shop_id: uuid.UUID,
    code: Annotated[str, Form(max_length=2000)],
) -> Response:
    """The household as the scan shows it, and what the attendant may hand over."""
    code = code.strip()
    scanned = await shop_orders.scan(session, _settings(request), principal, shop_id, code)
    items = [] if scanned.order else await shop_service.list_items(session, principal, shop_id)
    return await _counter(
        request,
        session,
        principal,
        shop_id,
        scanned=scanned,
        code=code,
        items=[i for i in items if i["active"]],
    )


@router.post("/shops/{shop_id}/redeem")
async def redeem(
    request: Request, session: SessionDep, principal: Counter, shop_id: uuid.UUID
) -> Response:
    form = await request.form(max_files=0, max_fields=200)
    try:
        data = CounterRedemptionCreate(
            code=str(form.get("code", "")),
            lines=[
                OrderLineCreate(item_id=uuid.UUID(key[4:]), quantity=int(str(value)))
                for key, value in form.multi_items()
                if key.startswith("qty-") and str(value).strip() not in ("", "0")
            ],
            identity_checked=form.get("identity_checked") == "on",
        )
    except ValueError as exc:  # pydantic's ValidationError included
        raise Unprocessable(
            "Pick at least one item, each once, with a quantity from 1 to 100.",
            code="web.redemption_invalid",
            title="请选择要兑换的物品并填写数量",
        ) from exc
    settings = _settings(request)
    order, order_lines = await shop_orders.redeem_at_counter(
        session, settings, principal, shop_id, data
    )
    done = await shop_orders.order_read(session, settings, order, lines=order_lines)
    return await _counter(request, session, principal, shop_id, done=done)


@router.post("/shops/{shop_id}/collect")
async def collect(
    request: Request,
    session: SessionDep,
    principal: Counter,
    shop_id: uuid.UUID,
    code: Annotated[str, Form(max_length=2000)],
) -> Response:
    settings = _settings(request)
    order = await shop_orders.collect(session, settings, principal, shop_id, code.strip())
    done = await shop_orders.order_read(session, settings, order)
    return await _counter(request, session, principal, shop_id, done=done)


# The village admin


def _next_period_start(periods: list[PeriodRead]) -> date:
    """The form's suggestion: the month after the latest period, or this month."""
    if not periods:
        return clock.today().replace(day=1)
    end = periods[-1].ends_on
    return end + timedelta(days=1)


@router.get("/villages/{village_id}/admin")
async def village_admin(
    request: Request, session: SessionDep, principal: VillageAdmin, village_id: uuid.UUID
) -> Response:
    village = await organisation.get_village_for_admin(session, principal, village_id)
    periods = await periods_service.list_periods(session, principal, village.id, None)
    shops = await shop_service.list_shops(session, principal, village.id)
    extra = await sections.loaded(sections.VILLAGE_ADMIN_SECTIONS, session, principal, village.id)
    return render(
        request,
        "village_admin.html",
        village=village,
        periods=list(reversed(periods)),
        actions=PERIOD_ACTIONS,
        shops=shops,
        sections=extra,
        next_month=_next_period_start(periods),
    )


@router.post("/villages/{village_id}/periods")
async def open_period(
    session: SessionDep,
    principal: VillageAdmin,
    village_id: uuid.UUID,
    starts_on: Annotated[date, Form()],
) -> Response:
    await periods_service.open_period(session, principal, village_id, starts_on)
    return see_other(f"/web/villages/{village_id}/admin")


@router.post("/periods/{period_id}/{action}")
async def period_action(
    session: SessionDep, principal: VillageAdmin, period_id: uuid.UUID, action: str
) -> Response:
    steps = {
        "submit": periods_service.submit,
        "approve": periods_service.approve,
        "publish": periods_service.publish,
    }
    step = steps.get(action)
    if step is None:
        raise NotFound("No such step.", code="web.not_found")
    period = await step(session, principal, period_id)
    return see_other(f"/web/villages/{period.village_id}/admin")


@router.get("/periods/{period_id}/results")
async def results(
    request: Request, session: SessionDep, principal: AnyStaff, period_id: uuid.UUID
) -> Response:
    published = PeriodResults.model_validate_json(
        await periods_service.results(session, principal, period_id)
    )
    return render(request, "results.html", results=published)


@router.post("/objections/{objection_id}/ruling")
async def rule_objection(
    request: Request, session: SessionDep, principal: VillageAdmin, objection_id: uuid.UUID
) -> Response:
    """The working group's ruling as the API's takes it: uphold (with the card's lines the
    admin re-scored, if any) or dismiss, a reason either way."""
    form = await request.form(max_files=0, max_fields=400)
    try:
        data = RulingCreate(
            decision=RulingDecision(str(form.get("decision", ""))),
            reason=str(form.get("reason", "")),
            lines=[
                AmendedLine(rule_item_id=uuid.UUID(key[5:]), outcome=Outcome(str(value)))
                for key, value in form.multi_items()
                if key.startswith("line-") and str(value) != ""
            ],
        )
    except ValueError as exc:  # pydantic's ValidationError included
        raise Unprocessable(
            "Uphold or dismiss, with a reason.",
            code="web.ruling_invalid",
            title="请填写处理理由",
        ) from exc
    objection = await objection_ruling.rule(session, principal, objection_id, data)
    return see_other(f"/web/villages/{objection.village_id}/admin#objections")


@router.get("/shops/{shop_id}/stock")
async def stock(
    request: Request, session: SessionDep, principal: VillageAdmin, shop_id: uuid.UUID
) -> Response:
    shop = await shop_service.get_shop(session, shop_id, shop_service.shop_managed(principal))
    items = await shop_service.list_items(session, principal, shop.id)
    return render(request, "stock.html", shop=shop, items=items)


@router.post("/shop-items/{item_id}/stock")
async def change_stock(
    session: SessionDep,
    principal: VillageAdmin,
    item_id: uuid.UUID,
    kind: Annotated[StockChange, Form()],
    delta: Annotated[int, Form(ge=-1_000_000, le=1_000_000)],
    reason: Annotated[str, Form(max_length=200)],
) -> Response:
    try:
        data = StockChangeCreate(kind=kind, delta=delta, reason=reason)
    except ValueError as exc:
        raise Unprocessable(
            "Restocking adds stock; a loss is a correction, and a change moves stock.",
            code="web.stock_change_invalid",
            title="库存变动有误：补货须为正数，损耗请用更正",
        ) from exc
    item = await shop_service.change_stock(session, principal, item_id, data)
    return see_other(f"/web/shops/{item.shop_id}/stock")


# The town supervisor's console

# Outcomes of the dashboard's standout-scorer flags, as the console names them.
SCORER_FLAGS = {"all_full_score": "全部满分", "no_spread": "分数无差异"}


AGES = ("under_7_days", "days_7_to_30", "over_30_days")


def _town_charts(figures: TownDashboard) -> Any:
    """The numbers the console's charts draw, one list a series, villages in the table's order."""
    villages = figures.villages

    def spread(v: VillageDashboard) -> float | None:
        scored = [p for p in v.periods if p.std_dev is not None]
        return round(scored[-1].std_dev or 0, 1) if scored else None

    return {
        "villages": [v.name for v in villages],
        "participation": [
            round(100 * v.participation.participating / v.participation.eligible)
            if v.participation.eligible
            else 0
            for v in villages
        ],
        "late": [v.periods_late for v in villages],
        "on_time": [len(v.periods) - v.periods_late for v in villages],
        "spread": [spread(v) for v in villages],
        "standouts": [sum(len(p.standout_scorers) for p in v.periods) for v in villages],
        "claims": {age: [getattr(v.claims_pending, age) for v in villages] for age in AGES},
        # Waiting for the village working group or, escalated, for the town.
        "objections": {
            age: [
                getattr(v.objections_open, age) + getattr(v.objections_escalated, age)
                for v in villages
            ]
            for age in AGES
        },
        "redeemed": [v.redemptions.points for v in villages],
        "outstanding": [v.liability.outstanding_points for v in villages],
    }


@router.get("/towns/{town_id}")
async def town(
    request: Request, session: SessionDep, principal: Supervisor, town_id: uuid.UUID
) -> Response:
    """The API's town dashboard for this quarter, villages side by side, with charts."""
    today = clock.today()
    figures = await dashboard.town_dashboard(
        session, principal, town_id, today.year, quarter_number(today.month), None
    )
    extra = await sections.loaded(sections.TOWN_SECTIONS, session, principal, town_id)
    return render(
        request,
        "town.html",
        figures=figures,
        chart=_town_charts(figures),
        scorer_flags=SCORER_FLAGS,
        sections=extra,
    )


@router.get("/villages/{village_id}/overview")
async def village_overview(
    request: Request, session: SessionDep, principal: Overseer, village_id: uuid.UUID
) -> Response:
    """The town's drill into one village: the dashboard's figures for this quarter, its
    periods and the claims waiting."""
    village = await organisation.get_village(session, principal, village_id)
    today = clock.today()
    figures = await dashboard.village_dashboard(
        session, principal, village.id, today.year, quarter_number(today.month), None
    )
    pending = await claims_service.village_claims(
        session, principal, village.id, PageParams(limit=MAX_LIMIT), status=ClaimStatus.PENDING
    )
    periods = await periods_service.list_periods(session, principal, village.id, None)
    return render(
        request,
        "village_overview.html",
        village=village,
        figures=figures,
        year=today.year,
        quarter=quarter_number(today.month),
        periods=list(reversed(periods)),
        claims=pending.claims,
        scorer_flags=SCORER_FLAGS,
        supervisor=principal.has_role(Role.TOWN_SUPERVISOR),
    )
