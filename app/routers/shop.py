import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app import clock
from app.config import Settings
from app.db import SessionDep
from app.driver import json_response
from app.idempotency import IdempotencyDep
from app.models import OrderStatus, Role
from app.pagination import Page, PageParams, page_params
from app.quick_routes import QuickRoute
from app.schemas.shop import (
    CardRead,
    CodeRead,
    CounterRedemptionCreate,
    LiabilityRead,
    OrderCreate,
    OrderRead,
    RefundCreate,
    ScanCreate,
    ScanRead,
    ShopCreate,
    ShopItemCreate,
    ShopItemRead,
    ShopItemUpdate,
    ShopRead,
    StockChangeCreate,
    StockMovementRead,
    TownShopCreate,
)
from app.security import (
    CurrentPrincipal,
    DistrictAdmin,
    Principal,
    ReadingDep,
    VillageAdmin,
    require_roles,
)
from app.services import shop as service
from app.services import shop_cards as cards
from app.services import shop_orders as orders
from app.services import shop_reports as reports
from app.xlsx import XLSX_MEDIA_TYPE, attachment

router = APIRouter(tags=["shop"], route_class=QuickRoute)
Paging = Annotated[PageParams, Depends(page_params)]
Counter = Annotated[Principal, require_roles(Role.VILLAGE_ADMIN, Role.SHOP_ATTENDANT)]
SheetReader = Annotated[
    Principal, require_roles(Role.VILLAGE_ADMIN, Role.SHOP_ATTENDANT, Role.TOWN_SUPERVISOR)
]
LiabilityReader = Annotated[Principal, require_roles(Role.VILLAGE_ADMIN, Role.TOWN_SUPERVISOR)]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.post(
    "/villages/{village_id}/shops",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_shop",
)
async def create_shop(
    session: SessionDep, principal: VillageAdmin, village_id: uuid.UUID, body: ShopCreate
) -> ShopRead:
    """The village's 积分超市."""
    return ShopRead.model_validate(await service.create_shop(session, principal, village_id, body))


@router.post(
    "/towns/{town_id}/shops", status_code=status.HTTP_201_CREATED, operation_id="create_town_shop"
)
async def create_town_shop(
    session: SessionDep, principal: DistrictAdmin, town_id: uuid.UUID, body: TownShopCreate
) -> ShopRead:
    """A town's shop serving listed villages of the town (its households redeem there)."""
    shop = await service.create_town_shop(session, principal, town_id, body)
    return ShopRead.model_validate(shop)


@router.get("/villages/{village_id}/shops", operation_id="list_shops")
async def list_shops(
    session: SessionDep, principal: CurrentPrincipal, village_id: uuid.UUID
) -> list[ShopRead]:
    """The shops serving the village (its own, and a town shop serving it)."""
    shops = await service.list_shops(session, principal, village_id)
    return [ShopRead.model_validate(s) for s in shops]


@router.get(
    "/shops/{shop_id}/items", operation_id="list_shop_items", response_model=list[ShopItemRead]
)
async def list_items(reading: ReadingDep, shop_id: uuid.UUID) -> Response:
    """The catalog; for a villager, whether their household may redeem each item now and if
    not, why (`refusal_code`). Staff also see inactive items."""
    return json_response(await service.list_items(reading.connection, reading.principal, shop_id))


@router.post(
    "/shops/{shop_id}/items", status_code=status.HTTP_201_CREATED, operation_id="create_shop_item"
)
async def create_item(
    session: SessionDep, principal: VillageAdmin, shop_id: uuid.UUID, body: ShopItemCreate
) -> ShopItemRead:
    """An item (never money or a money equivalent: `shop.money_item`)."""
    return ShopItemRead.model_validate(await service.create_item(session, principal, shop_id, body))


@router.patch("/shop-items/{shop_item_id}", operation_id="update_shop_item")
async def update_item(
    session: SessionDep, principal: VillageAdmin, shop_item_id: uuid.UUID, body: ShopItemUpdate
) -> ShopItemRead:
    return ShopItemRead.model_validate(
        await service.update_item(session, principal, shop_item_id, body)
    )


@router.post("/shop-items/{shop_item_id}/stock", operation_id="change_shop_item_stock")
async def change_stock(
    session: SessionDep, principal: VillageAdmin, shop_item_id: uuid.UUID, body: StockChangeCreate
) -> ShopItemRead:
    """Restock or correct stock with a reason; recorded with who did it, never below zero."""
    return ShopItemRead.model_validate(
        await service.change_stock(session, principal, shop_item_id, body)
    )


@router.get("/shop-items/{shop_item_id}/stock-movements", operation_id="list_stock_movements")
async def list_movements(
    session: SessionDep, principal: VillageAdmin, shop_item_id: uuid.UUID
) -> list[StockMovementRead]:
    movements = await service.list_movements(session, principal, shop_item_id)
    return [StockMovementRead.model_validate(m) for m in movements]


@router.post(
    "/shops/{shop_id}/orders", status_code=status.HTTP_201_CREATED, operation_id="place_order"
)
async def place_order(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    shop_id: uuid.UUID,
    body: OrderCreate,
    idempotency: IdempotencyDep,
) -> OrderRead:
    """Order ahead for the caller's household: points and stock are reserved at once; show the
    `pickup_code` at the counter before `expires_at`."""
    order, lines = await orders.place_order(session, principal, shop_id, body)
    result = await orders.order_read(session, _settings(request), order, owner=True, lines=lines)
    await idempotency.remember(status.HTTP_201_CREATED, result)
    return result


@router.get("/shops/{shop_id}/orders", operation_id="list_shop_orders")
async def list_shop_orders(
    request: Request,
    session: SessionDep,
    principal: Counter,
    shop_id: uuid.UUID,
    paging: Paging,
    status: OrderStatus | None = None,
) -> Page[OrderRead]:
    """The shop's orders and redemptions, oldest first (`status=reserved`: waiting for pickup)."""
    found, cursor = await orders.list_shop_orders(session, principal, shop_id, paging, status)
    reads = await orders.order_reads(session, _settings(request), found, owner=False)
    return Page(items=reads, next_cursor=cursor)


@router.get("/households/{household_id}/shop-orders", operation_id="list_household_orders")
async def list_household_orders(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    household_id: uuid.UUID,
    paging: Paging,
    status: OrderStatus | None = None,
) -> Page[OrderRead]:
    """The household's orders in every shop, oldest first; its own members see pickup codes."""
    found, cursor = await orders.list_household_orders(
        session, principal, household_id, paging, status
    )
    owner = principal.household_id == household_id
    reads = await orders.order_reads(session, _settings(request), found, owner=owner)
    return Page(items=reads, next_cursor=cursor)


@router.get("/shop-orders/{order_id}", operation_id="get_order")
async def get_order(
    request: Request, session: SessionDep, principal: CurrentPrincipal, order_id: uuid.UUID
) -> OrderRead:
    order, owner = await orders.get_order(session, principal, order_id)
    return await orders.order_read(session, _settings(request), order, owner=owner)


@router.post("/shop-orders/{order_id}/cancel", operation_id="cancel_order")
async def cancel_order(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    order_id: uuid.UUID,
) -> OrderRead:
    """The household cancels before pickup: points and stock go back."""
    order = await orders.cancel_order(session, principal, order_id)
    return await orders.order_read(session, _settings(request), order, owner=True)


@router.post("/shops/{shop_id}/pay-code", operation_id="issue_pay_code")
async def issue_pay_code(
    request: Request, session: SessionDep, principal: CurrentPrincipal, shop_id: uuid.UUID
) -> CodeRead:
    """The household's pay code for this shop: signed, single-use, valid about 90 seconds;
    the phone asks for a new one as it runs out."""
    return await orders.issue_pay_code(session, _settings(request), principal, shop_id)


@router.post("/shops/{shop_id}/scans", operation_id="scan_code")
async def scan_code(
    request: Request, session: SessionDep, principal: Counter, shop_id: uuid.UUID, body: ScanCreate
) -> ScanRead:
    """Who a pay code, card or pickup code belongs to, with balance and eligibility; nothing is
    spent. Refusals: shop.code_forged, shop.code_expired, shop.code_replayed,
    shop.code_other_shop, shop.card_revoked."""
    return await orders.scan(session, _settings(request), principal, shop_id, body.code)


@router.post(
    "/shops/{shop_id}/counter-redemptions",
    status_code=status.HTTP_201_CREATED,
    operation_id="redeem_at_counter",
)
async def redeem_at_counter(
    request: Request,
    session: SessionDep,
    principal: Counter,
    shop_id: uuid.UUID,
    body: CounterRedemptionCreate,
    idempotency: IdempotencyDep,
) -> OrderRead:
    """The attendant confirms the goods picked for a scanned pay code or household card
    (a card needs `identity_checked`); points and stock move in one transaction."""
    settings = _settings(request)
    order, lines = await orders.redeem_at_counter(session, settings, principal, shop_id, body)
    result = await orders.order_read(session, settings, order, lines=lines)
    await idempotency.remember(status.HTTP_201_CREATED, result)
    return result


@router.post("/shops/{shop_id}/pickups", operation_id="collect_order")
async def collect_order(
    request: Request, session: SessionDep, principal: Counter, shop_id: uuid.UUID, body: ScanCreate
) -> OrderRead:
    """Hand over an order ahead on its pickup code, once, before its deadline."""
    settings = _settings(request)
    order = await orders.collect(session, settings, principal, shop_id, body.code)
    return await orders.order_read(session, settings, order)


@router.post("/shop-orders/{order_id}/refund", operation_id="refund_order")
async def refund_order(
    request: Request,
    session: SessionDep,
    principal: Counter,
    order_id: uuid.UUID,
    body: RefundCreate,
) -> OrderRead:
    """Goods returned: the redemption is reversed and stock restored, once."""
    order = await orders.refund(session, principal, order_id, body.reason)
    return await orders.order_read(session, _settings(request), order)


@router.post(
    "/households/{household_id}/card",
    status_code=status.HTTP_201_CREATED,
    operation_id="issue_household_card",
)
async def issue_card(
    request: Request, session: SessionDep, principal: VillageAdmin, household_id: uuid.UUID
) -> CardRead:
    """A printable household card (积分卡) for members without a smartphone; reissuing voids the
    previous card."""
    return await cards.issue_card(session, _settings(request), principal, household_id)


@router.delete(
    "/households/{household_id}/card",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="revoke_household_card",
)
async def revoke_card(
    session: SessionDep, principal: VillageAdmin, household_id: uuid.UUID
) -> None:
    """A lost card: its code stops working at once."""
    await cards.revoke_card(session, principal, household_id)


@router.get(
    "/households/{household_id}/card/image",
    operation_id="print_household_card",
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {}, "application/pdf": {}},
            "description": "The current card's QR code, to print",
        }
    },
)
async def print_card(
    request: Request,
    session: SessionDep,
    principal: VillageAdmin,
    household_id: uuid.UUID,
    format: cards.CardFormat = cards.CardFormat.PNG,
) -> Response:
    image = await cards.card_image(session, _settings(request), principal, household_id, format)
    return Response(image, media_type=cards.MEDIA_TYPES[format])


@router.get(
    "/shops/{shop_id}/redemption-sheet",
    operation_id="export_redemption_sheet",
    response_class=Response,
    responses={
        200: {
            "content": {XLSX_MEDIA_TYPE: {}},
            "description": "The shop's 家庭积分兑换表 for the month (or year) as an XLSX workbook",
        }
    },
)
async def export_redemption_sheet(
    session: SessionDep,
    principal: SheetReader,
    shop_id: uuid.UUID,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    month: Annotated[int | None, Query(ge=1, le=12)] = None,
) -> Response:
    """Every line handed over in the month (or the whole year; default this year), with
    household, goods, points, how it was redeemed and who handed it over; refunds marked."""
    name, workbook = await reports.redemption_sheet(
        session, principal, shop_id, year or clock.today().year, month
    )
    return Response(
        workbook, media_type=XLSX_MEDIA_TYPE, headers={"Content-Disposition": attachment(name)}
    )


@router.get("/villages/{village_id}/shop-liability", operation_id="get_shop_liability")
async def get_liability(
    session: SessionDep,
    principal: LiabilityReader,
    village_id: uuid.UUID,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> LiabilityRead:
    """Points redeemed in the year (net of refunds) and the spendable points still outstanding,
    in points and in yuan of goods at the policy's display value (never cash)."""
    return await reports.liability(session, principal, village_id, year)
