"""Redeeming: orders placed ahead and collected with a pickup code, redemptions at the counter
with the household's pay code or card, cancellations, expiry and refunds.

Every path that moves points or stock locks rows in one order: the order's own row (cancel,
expire, refund), then per item in id order the household's allowance row and the item's row,
and last the village's chain (ledger.post, then the spendable-points check). One order
everywhere, so racing requests queue instead of deadlocking, and the chain (which serialises a
whole village) is held only for the last few statements. Nothing is decided on a value read
earlier: stock, per-household allowances, balances, order states and code nonces are each
guarded by the database itself (CHECK constraints, conditional UPDATEs, unique keys).

The ledger records a redemption as a balance-only entry (counts_score False: spending never
lowers a rank). Where the policy does not spend the balance (翁源: goods by score tier, the
points stay), nothing is posted: the ledger holds points, and no points moved; the order
itself (with its round, tier and items) is the record, and the per-household limits are what
stop a household taking more than its tier's share.
"""

import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    DateTime,
    Integer,
    String,
    any_,
    case,
    column,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.config import Settings
from app.driver import DriverStatement, param
from app.errors import AppError, Conflict, Forbidden, NotFound, Unprocessable
from app.models import (
    HouseholdCard,
    LedgerEntry,
    LedgerKind,
    NotificationKind,
    OrderChannel,
    OrderStatus,
    Shop,
    ShopAllowance,
    ShopCodeUse,
    ShopItem,
    ShopOrder,
    ShopOrderLine,
    ShopRoundUse,
    StockChange,
    StockMovement,
)
from app.pagination import PageParams, paginate
from app.schemas.shop import (
    CodeKind,
    CodeRead,
    CounterRedemptionCreate,
    OrderCreate,
    OrderLineCreate,
    OrderLineRead,
    OrderRead,
    ScanRead,
)
from app.security import Principal
from app.services import audit, ledger, notifications, shop_codes
from app.services.households import get_household
from app.services.periods import notice_board_name
from app.services.shop import (
    ITEM_INACTIVE,
    HouseholdRow,
    Refusal,
    ShopKey,
    ShopRow,
    Standing,
    attended_shop,
    attended_villages,
    counter_household,
    get_shop,
    household_of,
    round_used,
    served_household,
    shop_attended,
    shop_not_found,
    shop_of,
    shop_readable,
    standing_of,
)
from app.timeutil import wechat_time

# How long an order ahead waits at the counter before its points and stock go back.
ORDER_HOLD = timedelta(hours=72)
SOURCE = "shop_order"


def order_not_found() -> NotFound:
    return NotFound("No such order.", code="shop_order.not_found", title="订单不存在")


class OrderItem(NamedTuple):
    """An item as an order reads it (an ItemTerms)."""

    id: uuid.UUID
    name: str
    price_points: int
    stock: int | None
    active: bool
    limit_per_period: int | None
    min_period_score: int | None


class OrderLine(NamedTuple):
    """A line as an order's read shows it (ShopOrderLine's columns)."""

    order_id: uuid.UUID
    item_id: uuid.UUID
    item_name: str
    unit_points: int
    quantity: int


LineTerms = ShopOrderLine | OrderLine


def _uuid_param(name: str) -> Any:
    return param(name, PG_UUID(as_uuid=True))


_SHOP, _HOUSEHOLD, _ITEM = (
    _uuid_param("shop_id"),
    _uuid_param("household_id"),
    _uuid_param("item_id"),
)
_ROUND_KEY = param("round_key", String())
_QUANTITY, _LIMIT = param("quantity", Integer()), param("limit", Integer())

# The statements of a redemption, built once (each request only binds its values): building
# Core statements cost more of a redemption's CPU than PostgreSQL's work on them.
_ITEMS = DriverStatement(
    select(*(col(getattr(ShopItem, name)) for name in OrderItem._fields))
    .where(
        col(ShopItem.id) == any_(param("item_ids", ARRAY(PG_UUID(as_uuid=True)))),
        col(ShopItem.shop_id) == _SHOP,
    )
    .order_by(col(ShopItem.id)),
    "item_ids",
    "shop_id",
)
_ORDER_COLUMNS = tuple(column.name for column in ShopOrder.__table__.columns)  # type: ignore[attr-defined]
# A line's columns besides its order's, each sent as an array of the order's lines.
_LINE_ARRAYS: dict[str, Any] = {
    "id": PG_UUID(as_uuid=True),
    "item_id": PG_UUID(as_uuid=True),
    "item_name": String(),
    "unit_points": Integer(),
    "quantity": Integer(),
}


def _place_statement() -> DriverStatement:
    """The order and its lines in one statement: the lines' rows are unnested from one array
    per column (line_<column>), their order the one inserted beside them."""
    table = ShopOrder.__table__  # type: ignore[attr-defined]
    placed = (
        insert(table)
        .values({name: param(name, table.c[name].type) for name in _ORDER_COLUMNS})
        .returning(table.c.id)
        .cte("placed")
    )
    lines = (
        func.unnest(*(param(f"line_{name}", ARRAY(kind)) for name, kind in _LINE_ARRAYS.items()))
        .table_valued(*(column(name, kind) for name, kind in _LINE_ARRAYS.items()))
        .render_derived(name="lines")
    )
    statement = (
        insert(ShopOrderLine.__table__)  # type: ignore[attr-defined]
        .from_select(
            ["order_id", *_LINE_ARRAYS],
            select(placed.c.id, *(lines.c[name] for name in _LINE_ARRAYS)).select_from(
                placed.join(lines, true())
            ),
        )
        .add_cte(placed)
    )
    return DriverStatement(statement, *_ORDER_COLUMNS, *(f"line_{name}" for name in _LINE_ARRAYS))


_PLACE = _place_statement()


def _take_round_statement() -> DriverStatement:
    """Count the order against the household's orders this round; the limit is part of the
    same statement, so two orders racing for the last one cannot both pass."""
    insert = pg_insert(ShopRoundUse).values(household_id=_HOUSEHOLD, round_key=_ROUND_KEY, orders=1)
    total = col(ShopRoundUse.orders) + 1
    upsert = insert.on_conflict_do_update(
        index_elements=[col(ShopRoundUse.household_id), col(ShopRoundUse.round_key)],
        set_={"orders": total},
        where=total <= _LIMIT,
    )
    return DriverStatement(
        upsert.returning(col(ShopRoundUse.orders)), "household_id", "round_key", "limit"
    )


def _take_allowance_statement() -> DriverStatement:
    """Count what the household takes this round; the limit (none: NULL) is part of the same
    statement."""
    insert = pg_insert(ShopAllowance).values(
        household_id=_HOUSEHOLD, item_id=_ITEM, round_key=_ROUND_KEY, quantity=_QUANTITY
    )
    total = col(ShopAllowance.quantity) + insert.excluded.quantity
    upsert = insert.on_conflict_do_update(
        index_elements=[
            col(ShopAllowance.household_id),
            col(ShopAllowance.item_id),
            col(ShopAllowance.round_key),
        ],
        set_={"quantity": total},
        where=_LIMIT.is_(None) | (total <= _LIMIT),
    )
    return DriverStatement(
        upsert.returning(col(ShopAllowance.quantity)),
        "household_id",
        "item_id",
        "round_key",
        "quantity",
        "limit",
    )


def _take_item_statement() -> DriverStatement:
    """Take the stock, in one statement that also requires the item still on sale: the checks
    before read the item without a lock, and a deactivation committed since then must still
    refuse the order. A service (no stock) is updated too (its NULL stock stays NULL), so that
    it is locked in the shop's order: a deactivation either commits first and refuses this
    order here, or waits for it to finish."""
    return DriverStatement(
        update(ShopItem)
        .where(
            col(ShopItem.id) == _ITEM,
            col(ShopItem.active),
            col(ShopItem.stock).is_(None) | (col(ShopItem.stock) >= _QUANTITY),
        )
        .values(stock=col(ShopItem.stock) - _QUANTITY)
        .returning(col(ShopItem.id)),
        "item_id",
        "quantity",
    )


_TAKE_ROUND = _take_round_statement()
_TAKE_ALLOWANCE = _take_allowance_statement()
_TAKE_ITEM = _take_item_statement()
_ITEM_ACTIVE = DriverStatement(
    select(col(ShopItem.active)).where(col(ShopItem.id) == _ITEM), "item_id"
)


def _out_of_stock(item: OrderItem) -> Conflict:
    return Conflict(
        f"Not enough of {item.name} in stock.", code="shop.out_of_stock", title="该商品库存不足"
    )


async def _redeem(
    session: AsyncSession,
    actor: Principal,
    shop: ShopRow,
    household: HouseholdRow,
    standing: Standing,
    lines: Sequence[OrderLineCreate],
    *,
    channel: OrderChannel,
    order_id: uuid.UUID | None = None,
    identity_checked: bool = False,
) -> tuple[ShopOrder, list[ShopOrderLine]]:
    """Check the policy (`standing`, read in this transaction), take allowances and stock,
    spend the points: one transaction."""
    wanted = {line.item_id: line.quantity for line in lines}
    items = [
        OrderItem(*row)
        for row in await _ITEMS.fetch(session, item_ids=list(wanted), shop_id=shop.id)
    ]
    if len(items) != len(wanted):
        raise NotFound("No such item in this shop.", code="shop_item.not_found", title="商品不存在")
    if standing.refusal:
        raise standing.refusal.error()
    for item in items:
        refusal = standing.item_refusal(item)
        if refusal:
            raise refusal.error()
        if item.limit_per_period is not None and wanted[item.id] > item.limit_per_period:
            raise _over_limit(item)

    now = clock.now()
    ahead = channel is OrderChannel.AHEAD
    order = ShopOrder(
        id=order_id or uuid.uuid4(),
        shop_id=shop.id,
        town_id=shop.town_id,
        village_id=household.village_id,
        household_id=household.id,
        channel=channel,
        status=OrderStatus.RESERVED if ahead else OrderStatus.COLLECTED,
        points=sum(item.price_points * wanted[item.id] for item in items),
        spends_balance=standing.policy.spends_balance,
        round_key=standing.round_key,
        identity_checked=identity_checked,
        counts_round=standing.policy.orders_per_round is not None,
        expires_at=now + ORDER_HOLD if ahead else None,
        created_by=actor.person_id,
        collected_by=None if ahead else actor.person_id,
        collected_at=None if ahead else now,
    )
    order_lines = [
        ShopOrderLine(
            order_id=order.id,
            item_id=item.id,
            item_name=item.name,
            unit_points=item.price_points,
            quantity=wanted[item.id],
        )
        for item in items
    ]
    await _PLACE.execute(
        session,
        **{name: getattr(order, name) for name in _ORDER_COLUMNS},
        **{f"line_{name}": [getattr(line, name) for line in order_lines] for name in _LINE_ARRAYS},
    )
    limit = standing.policy.orders_per_round
    if limit is not None:
        taken = await _TAKE_ROUND.fetchrow(
            session, household_id=household.id, round_key=order.round_key, limit=limit
        )
        if taken is None:
            raise round_used(limit).error()
    for item in items:
        await _take_allowance(session, household.id, item, wanted[item.id], order.round_key)
        await _take_item(session, item, wanted[item.id])
    if order.spends_balance:
        # Points of a period approved but not yet published (公示) are not the household's to
        # spend yet: a villager does not see them (ledger.UNPUBLISHED_READERS). Checked as the
        # balance moves, under the village's chain lock, which approval and corrections take
        # too. The one change that needs no chain lock, publication, only turns unpublished
        # points into spendable ones: racing it, an order is at worst refused points published
        # an instant ago, never allowed unpublished ones.
        await ledger.post(
            session,
            household.village_id,
            [_entry(order, LedgerKind.REDEMPTION, -order.points, actor, "积分兑换")],
            spend_published_only=True,
        )
    return order, order_lines


async def _take_item(session: AsyncSession, item: OrderItem, quantity: int) -> None:
    if await _TAKE_ITEM.fetchrow(session, item_id=item.id, quantity=quantity) is None:
        current = await _ITEM_ACTIVE.fetchrow(session, item_id=item.id)
        if not current["active"]:
            raise ITEM_INACTIVE.error()
        raise _out_of_stock(item)


def _over_limit(item: OrderItem) -> Conflict:
    return Conflict(
        f"At most {item.limit_per_period} of {item.name} per household in a round.",
        code="shop.over_limit",
        title=f"每户每期限兑{item.limit_per_period}件",
    )


async def _take_allowance(
    session: AsyncSession, household_id: uuid.UUID, item: OrderItem, quantity: int, key: str
) -> None:
    counted = await _TAKE_ALLOWANCE.fetchrow(
        session,
        household_id=household_id,
        item_id=item.id,
        round_key=key,
        quantity=quantity,
        limit=item.limit_per_period,
    )
    if counted is None:
        raise _over_limit(item)


def _entry(
    order: ShopOrder,
    kind: LedgerKind,
    points: int,
    actor: Principal | None,
    memo: str,
    year: int | None = None,
) -> ledger.NewEntry:
    return ledger.NewEntry(
        household_id=order.household_id,
        kind=kind,
        points=points,
        counts_score=False,
        counts_balance=True,
        year=clock.today().year if year is None else year,
        source_type=SOURCE,
        source_id=order.id,
        actor_id=actor.person_id if actor else None,
        memo=memo,
    )


async def _give_back(session: AsyncSession, order: ShopOrder, actor: Principal | None) -> None:
    """Return an order's stock, allowances (its round's, its items') and points: called once,
    by whoever moved the order out of its state (the conditional UPDATE that did it is the
    guard)."""
    lines = list(
        (
            await session.execute(
                select(ShopOrderLine)
                .where(col(ShopOrderLine.order_id) == order.id)
                .order_by(col(ShopOrderLine.item_id))
            )
        ).scalars()
    )
    if order.counts_round:
        await session.execute(
            update(ShopRoundUse)
            .where(
                col(ShopRoundUse.household_id) == order.household_id,
                col(ShopRoundUse.round_key) == order.round_key,
            )
            .values(orders=col(ShopRoundUse.orders) - 1)
        )
    for line in lines:
        await session.execute(
            update(ShopAllowance)
            .where(
                col(ShopAllowance.household_id) == order.household_id,
                col(ShopAllowance.item_id) == line.item_id,
                col(ShopAllowance.round_key) == order.round_key,
            )
            .values(quantity=col(ShopAllowance.quantity) - line.quantity)
        )
        await session.execute(
            update(ShopItem)
            .where(col(ShopItem.id) == line.item_id, col(ShopItem.stock).is_not(None))
            .values(stock=col(ShopItem.stock) + line.quantity)
        )
    if order.spends_balance and order.points > 0:
        memo = {
            OrderStatus.CANCELLED: "订单取消，积分退回",
            OrderStatus.EXPIRED: "订单逾期未取，积分退回",
            OrderStatus.REFUNDED: "退货，积分退回",
        }[order.status]
        # The points return to the years the spend drew them from (ledger.post draws on the
        # oldest year first): a give-back after New Year must not turn last year's points into
        # this year's and dodge the reset, and ledger.post expires them again where that year
        # has closed and reset. Read under the chain lock, which the close also takes.
        await ledger.lock_chain(session, order.village_id)
        drawn = (
            await session.execute(
                select(col(LedgerEntry.year), col(LedgerEntry.points))
                .where(
                    col(LedgerEntry.household_id) == order.household_id,
                    col(LedgerEntry.source_type) == SOURCE,
                    col(LedgerEntry.source_id) == order.id,
                    col(LedgerEntry.kind) == LedgerKind.REDEMPTION,
                )
                .order_by(col(LedgerEntry.year))
            )
        ).all()
        entries = [
            _entry(order, LedgerKind.REFUND, -spent, actor, memo, year) for year, spent in drawn
        ]
        await ledger.post(session, order.village_id, entries)


@cache
def _move_statement(
    from_status: OrderStatus, to_status: OrderStatus, still_open: bool
) -> DriverStatement:
    """_move's conditional UPDATE for one kind of change, built once."""
    now = param("now", DateTime(timezone=True))
    actor = _uuid_param("actor")
    statement = update(ShopOrder).where(
        col(ShopOrder.id) == _uuid_param("order_id"), col(ShopOrder.status) == from_status
    )
    if still_open:
        statement = statement.where(col(ShopOrder.expires_at) > now)
    values: dict[str, Any]
    runtime = ["order_id", "now", "actor"]
    if to_status is OrderStatus.COLLECTED:
        values = {"collected_at": now, "collected_by": actor}
    else:
        values = {"closed_at": now, "closed_by": actor, "close_reason": param("reason", String())}
        runtime.append("reason")
    statement = statement.values(status=to_status, **values).returning(
        *(col(getattr(ShopOrder, name)) for name in _ORDER_COLUMNS)
    )
    return DriverStatement(statement, *runtime)


async def _move(
    session: AsyncSession,
    order_id: uuid.UUID,
    *,
    from_status: OrderStatus,
    to_status: OrderStatus,
    actor: Principal | None,
    reason: str = "",
    still_open: bool = False,
) -> ShopOrder | None:
    """One state change, taken by one caller however many race for it. The order as moved: a
    new object, not the session's (an order the caller read before keeps its old state)."""
    closing = {} if to_status is OrderStatus.COLLECTED else {"reason": reason}
    row = await _move_statement(from_status, to_status, still_open).fetchrow(
        session,
        order_id=order_id,
        now=clock.now(),
        actor=actor.person_id if actor else None,
        **closing,
    )
    return None if row is None else _order_of(row)


# An order's row as the driver reads it, and its object for order_read and the checks.
_ORDER = DriverStatement(
    select(*(col(getattr(ShopOrder, name)) for name in _ORDER_COLUMNS)).where(
        col(ShopOrder.id) == _uuid_param("order_id")
    ),
    "order_id",
)


def _order_of(row: Any) -> ShopOrder:
    order = ShopOrder(**row)
    # The driver reads the enums' stored values.
    order.channel, order.status = OrderChannel(row["channel"]), OrderStatus(row["status"])
    return order


async def _order(session: AsyncSession, order_id: uuid.UUID | None) -> ShopOrder | None:
    row = await _ORDER.fetchrow(session, order_id=order_id)
    return None if row is None else _order_of(row)


def _not_open(order: ShopOrder) -> Conflict:
    if order.status is OrderStatus.RESERVED:  # reserved but past its deadline
        return Conflict("The order expired.", code="shop.order_expired", title="订单已过期")
    code, title = {
        OrderStatus.COLLECTED: ("shop.order_collected", "订单已领取"),
        OrderStatus.REFUNDED: ("shop.order_collected", "订单已领取"),
        OrderStatus.CANCELLED: ("shop.order_cancelled", "订单已取消"),
        OrderStatus.EXPIRED: ("shop.order_expired", "订单已过期"),
    }[order.status]
    return Conflict(f"The order is {order.status.value}.", code=code, title=title)


# Reading


async def order_read(
    session: AsyncSession,
    settings: Settings,
    order: ShopOrder,
    *,
    owner: bool = False,
    lines: Sequence[LineTerms] | None = None,
) -> OrderRead:
    """The order as its household or the counter sees it (`lines` when the caller has them)."""
    if lines is None:
        lines = (await _lines_by_order(session, [order.id]))[order.id]
    lines = sorted(lines, key=lambda line: (line.item_name, str(line.item_id)))
    show_code = owner and order.status is OrderStatus.RESERVED
    return OrderRead(
        id=order.id,
        shop_id=order.shop_id,
        household_id=order.household_id,
        channel=order.channel,
        status=order.status,
        points=order.points,
        spends_balance=order.spends_balance,
        identity_checked=order.identity_checked,
        expires_at=order.expires_at,
        created_at=order.created_at,
        collected_at=order.collected_at,
        closed_at=order.closed_at,
        close_reason=order.close_reason,
        lines=[OrderLineRead.model_validate(line) for line in lines],
        pickup_code=shop_codes.pickup_code(settings, order.shop_id, order.id)
        if show_code
        else None,
    )


_LINES = DriverStatement(
    select(*(col(getattr(ShopOrderLine, name)) for name in OrderLine._fields)).where(
        col(ShopOrderLine.order_id) == any_(param("order_ids", ARRAY(PG_UUID(as_uuid=True))))
    ),
    "order_ids",
)


async def _lines_by_order(
    session: AsyncSession, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[OrderLine]]:
    """The lines of several orders, read in one query."""
    lines: dict[uuid.UUID, list[OrderLine]] = {order_id: [] for order_id in order_ids}
    if order_ids:
        for row in await _LINES.fetch(session, order_ids=list(lines)):
            line = OrderLine(*row)
            lines[line.order_id].append(line)
    return lines


async def order_reads(
    session: AsyncSession, settings: Settings, orders: Sequence[ShopOrder], *, owner: bool
) -> list[OrderRead]:
    """Several orders with their lines."""
    lines = await _lines_by_order(session, [order.id for order in orders])
    return [
        await order_read(session, settings, order, owner=owner, lines=lines[order.id])
        for order in orders
    ]


async def _page(
    session: AsyncSession, statement: Any, params: PageParams, status: OrderStatus | None
) -> tuple[list[ShopOrder], str | None]:
    if status is not None:
        statement = statement.where(col(ShopOrder.status) == status)
    rows, cursor = await paginate(
        session,
        statement,
        order=[col(ShopOrder.created_at), col(ShopOrder.id)],
        params=params,
        parse=[datetime.fromisoformat, uuid.UUID],
    )
    return [row[0] for row in rows], cursor


async def list_shop_orders(
    session: AsyncSession,
    principal: Principal,
    shop_id: uuid.UUID,
    params: PageParams,
    status: OrderStatus | None,
) -> tuple[list[ShopOrder], str | None]:
    """The counter's orders, oldest first (status=reserved: what waits to be collected)."""
    shop = await get_shop(session, shop_id, shop_attended(principal))
    statement = select(ShopOrder).where(col(ShopOrder.shop_id) == shop.id)
    villages = attended_villages(principal, shop)
    if villages is not None:
        statement = statement.where(col(ShopOrder.village_id).in_(villages))
    return await _page(session, statement, params, status)


async def list_household_orders(
    session: AsyncSession,
    principal: Principal,
    household_id: uuid.UUID,
    params: PageParams,
    status: OrderStatus | None,
) -> tuple[list[ShopOrder], str | None]:
    """A household's orders in every shop, oldest first."""
    household = await get_household(session, principal, household_id)
    statement = select(ShopOrder).where(col(ShopOrder.household_id) == household.id)
    return await _page(session, statement, params, status)


async def get_order(
    session: AsyncSession, principal: Principal, order_id: uuid.UUID
) -> tuple[ShopOrder, bool]:
    """(the order, whether the caller's household placed it): its household or its counter."""
    order = await session.get(ShopOrder, order_id)
    if order is None:
        raise order_not_found()
    owner = principal.household_id == order.household_id
    if not owner:
        await _attended_shop(session, principal, order)
    return order, owner


async def _attended_shop(session: AsyncSession, principal: Principal, order: ShopOrder) -> ShopRow:
    """The order's shop, where the caller serves its counter for the order's village; to
    anyone else the order does not exist."""
    try:
        shop = await attended_shop(session, principal, order.shop_id)
    except NotFound:
        raise order_not_found() from None
    villages = attended_villages(principal, shop)
    if villages is not None and order.village_id not in villages:
        raise order_not_found()
    return shop


def _check_attended_village(principal: Principal, shop: ShopKey, village_id: uuid.UUID) -> None:
    villages = attended_villages(principal, shop)
    if villages is not None and village_id not in villages:
        raise Forbidden(
            "You serve this shop's counter for your own village's households only.",
            code="shop.other_village",
            title="只能为本村农户办理兑换",
        )


# The villager's side


def _own_household(principal: Principal) -> uuid.UUID:
    if principal.household_id is None:
        raise Forbidden("Only a member of a household redeems its points.")
    return principal.household_id


async def _served_shop(session: AsyncSession, principal: Principal, shop_id: uuid.UUID) -> Shop:
    shop = await get_shop(session, shop_id, shop_readable(principal))
    if principal.household_village_id not in shop.served_village_ids:
        raise shop_not_found()
    return shop


async def place_order(
    session: AsyncSession, principal: Principal, shop_id: uuid.UUID, data: OrderCreate
) -> tuple[ShopOrder, list[ShopOrderLine]]:
    _own_household(principal)
    day = clock.today()
    row = await served_household(session, principal, shop_id, day)
    # As _served_shop: a shop not serving the caller's village is not theirs to see.
    if row is None or principal.household_village_id not in row["served_village_ids"]:
        raise shop_not_found()
    household = household_of(row)
    assert household is not None
    return await _redeem(
        session,
        principal,
        shop_of(row),
        household,
        standing_of(row, day),
        data.lines,
        channel=OrderChannel.AHEAD,
    )


async def cancel_order(
    session: AsyncSession, principal: Principal, order_id: uuid.UUID
) -> ShopOrder:
    household_id = _own_household(principal)
    order = await session.get(ShopOrder, order_id)
    if order is None or order.household_id != household_id:
        raise order_not_found()
    moved = await _move(
        session,
        order.id,
        from_status=OrderStatus.RESERVED,
        to_status=OrderStatus.CANCELLED,
        actor=principal,
        reason="村民取消",
        still_open=True,
    )
    if moved is None:
        await session.refresh(order)
        raise _not_open(order)
    await _give_back(session, moved, principal)
    return moved


async def issue_pay_code(
    session: AsyncSession, settings: Settings, principal: Principal, shop_id: uuid.UUID
) -> CodeRead:
    household_id = _own_household(principal)
    shop = await _served_shop(session, principal, shop_id)
    code, expires = shop_codes.pay_code(settings, shop.id, household_id)
    return CodeRead(code=code, expires_at=expires)


# The counter's side


async def _counter_code(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    shop_id: uuid.UUID,
    code: str,
    day: date,
) -> tuple[ShopRow, shop_codes.ScannedCode, Any]:
    """The shop whose counter the caller serves, the code read for it, and the row of
    shop.counter_household for the household the code names (a pickup code: its order's; none
    where that does not exist): one statement, half of them at every redemption. A missing
    shop is refused before the code, as when the shop was read alone first."""
    refused: AppError | None = None
    scanned: shop_codes.ScannedCode | None = None
    try:
        scanned = shop_codes.read_code(settings, code, shop_id)
    except AppError as exc:
        refused = exc
    row = await counter_household(
        session,
        principal,
        shop_id,
        day,
        household_id=scanned.household_id if scanned is not None else None,
        order_id=scanned.order_id if scanned is not None else None,
        nonce=scanned.nonce if scanned is not None else None,
    )
    if row is None:
        raise shop_not_found()
    if refused is not None:
        raise refused
    assert scanned is not None
    return shop_of(row), scanned, row


_CARD_CURRENT = DriverStatement(
    select(col(HouseholdCard.id)).where(
        col(HouseholdCard.id) == _uuid_param("card_id"),
        col(HouseholdCard.household_id) == _HOUSEHOLD,
        col(HouseholdCard.revoked_at).is_(None),
    ),
    "card_id",
    "household_id",
)


async def _scanned_household(
    session: AsyncSession, shop: ShopRow, scanned: shop_codes.ScannedCode, row: Any
) -> HouseholdRow:
    household = household_of(row)
    if household is None:
        raise shop_codes.forged()
    if household.village_id not in shop.served_village_ids:
        raise shop_codes.other_shop()
    if scanned.kind is CodeKind.CARD:
        current = await _CARD_CURRENT.fetchrow(
            session, card_id=scanned.card_id, household_id=household.id
        )
        if current is None:
            raise Conflict(
                "The card was revoked; ask the village for the new one.",
                code="shop.card_revoked",
                title="该积分卡已作废",
            )
    return household


async def scan(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    shop_id: uuid.UUID,
    code: str,
) -> ScanRead:
    """Who the code belongs to, for the attendant to check; nothing is spent."""
    day = clock.today()
    shop, scanned, row = await _counter_code(session, settings, principal, shop_id, code, day)
    order_read_model = None
    if scanned.kind is CodeKind.PICKUP:
        order = await _order(session, scanned.order_id)
        if order is None or order.shop_id != shop.id:
            raise shop_codes.forged()
        _check_attended_village(principal, shop, order.village_id)
        if order.status is not OrderStatus.RESERVED or (
            order.expires_at is not None and order.expires_at <= clock.now()
        ):
            raise _not_open(order)
        # The order's household, read with the shop (_counter_code).
        household = household_of(row)
        assert household is not None
        order_read_model = await order_read(session, settings, order)
    else:
        household = await _scanned_household(session, shop, scanned, row)
        _check_attended_village(principal, shop, household.village_id)
    if order_read_model is None and row["replayed"]:
        raise shop_codes.replayed()
    standing = standing_of(row, day)
    refusal: Refusal | None = None if order_read_model else standing.refusal
    return ScanRead(
        kind=scanned.kind,
        household_id=household.id,
        household_number=household.number,
        head_name=notice_board_name(row["head_name"]),
        balance=int(row["spendable"] or 0),
        tier=standing.tier,
        redeemable_now=refusal is None,
        refusal_code=refusal.code if refusal else None,
        refusal=refusal.title if refusal else None,
        expires_at=scanned.expires_at,
        order=order_read_model,
    )


_CLAIM_CODE = DriverStatement(
    pg_insert(ShopCodeUse)
    .values(
        nonce=_uuid_param("nonce"),
        shop_id=_SHOP,
        household_id=_HOUSEHOLD,
        order_id=_uuid_param("order_id"),
    )
    .on_conflict_do_nothing()
    .returning(col(ShopCodeUse.nonce)),
    "nonce",
    "shop_id",
    "household_id",
    "order_id",
)


async def redeem_at_counter(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    shop_id: uuid.UUID,
    data: CounterRedemptionCreate,
) -> tuple[ShopOrder, list[ShopOrderLine]]:
    day = clock.today()
    shop, scanned, row = await _counter_code(session, settings, principal, shop_id, data.code, day)
    if scanned.kind is CodeKind.PICKUP:
        raise Unprocessable(
            "A pickup code is collected, not redeemed at the counter.",
            code="shop.code_wrong_kind",
            title="这是订单取货码，请用取货功能",
        )
    if scanned.kind is CodeKind.CARD and not data.identity_checked:
        raise Unprocessable(
            "A household card redeems only after the attendant checked the member's identity.",
            code="shop.identity_not_checked",
            title="使用积分卡须核验身份",
        )
    household = await _scanned_household(session, shop, scanned, row)
    _check_attended_village(principal, shop, household.village_id)
    order_id = uuid.uuid4()
    if scanned.nonce is not None:
        # Claimed before anything is taken: a second scan of the code waits here for the first
        # one's transaction and, once that commits, is refused without doing any work. If the
        # first fails (not enough points), its claim rolls back and the code is still good.
        claimed = await _CLAIM_CODE.fetchrow(
            session,
            nonce=scanned.nonce,
            shop_id=shop.id,
            household_id=household.id,
            order_id=order_id,
        )
        if claimed is None:
            raise shop_codes.replayed()
    return await _redeem(
        session,
        principal,
        shop,
        household,
        standing_of(row, day),
        data.lines,
        channel=OrderChannel.CARD if scanned.kind is CodeKind.CARD else OrderChannel.PAY_CODE,
        order_id=order_id,
        identity_checked=data.identity_checked,
    )


async def collect(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    shop_id: uuid.UUID,
    code: str,
) -> ShopOrder:
    shop = await attended_shop(session, principal, shop_id)
    scanned = shop_codes.read_code(settings, code, shop.id)
    if scanned.kind is not CodeKind.PICKUP or scanned.order_id is None:
        raise Unprocessable(
            "This is not an order's pickup code.",
            code="shop.code_wrong_kind",
            title="这不是订单取货码",
        )
    placed = await _order(session, scanned.order_id)
    if placed is None:
        raise shop_codes.forged()
    _check_attended_village(principal, shop, placed.village_id)
    moved = await _move(
        session,
        scanned.order_id,
        from_status=OrderStatus.RESERVED,
        to_status=OrderStatus.COLLECTED,
        actor=principal,
        still_open=True,
    )
    if moved is None:
        current = await _order(session, placed.id)
        assert current is not None
        raise _not_open(current)
    return moved


async def refund(
    session: AsyncSession, principal: Principal, order_id: uuid.UUID, reason: str
) -> ShopOrder:
    """Goods brought back: points, stock and allowance return, once."""
    order = await session.get(ShopOrder, order_id)
    if order is None:
        raise order_not_found()
    shop = await _attended_shop(session, principal, order)
    if principal.household_id == order.household_id:
        # Handing one's own household its points back is for a colleague to do.
        raise Forbidden(
            "You may not refund your own household's order.",
            code="shop.own_household",
            title="不能为本户办理退货",
        )
    moved = await _move(
        session,
        order.id,
        from_status=OrderStatus.COLLECTED,
        to_status=OrderStatus.REFUNDED,
        actor=principal,
        reason=reason,
    )
    if moved is None:
        await session.refresh(order)
        if order.status is OrderStatus.REFUNDED:
            raise Conflict(
                "The order was already refunded.",
                code="shop.already_refunded",
                title="该订单已退货",
            )
        raise Conflict(
            "Only collected goods can be refunded.",
            code="shop.order_not_collected",
            title="订单尚未领取，不能退货",
        )
    await _give_back(session, moved, principal)
    # Read under the row locks the give-back took: the stock each return left.
    returned = await session.execute(
        select(col(ShopOrderLine.item_id), col(ShopOrderLine.quantity), col(ShopItem.stock))
        .join(ShopItem, col(ShopItem.id) == col(ShopOrderLine.item_id))
        .where(col(ShopOrderLine.order_id) == moved.id)
    )
    session.add_all(
        StockMovement(
            item_id=item_id,
            shop_id=shop.id,
            kind=StockChange.RESTOCK,
            delta=quantity,
            stock_after=stock,
            reason=f"订单退货 {moved.id}",
            actor_id=principal.person_id,
        )
        for item_id, quantity, stock in returned
        if stock is not None  # a service keeps no stock
    )
    await session.flush()
    audit.record(
        session, principal, "shop_order.refund", "shop_order", moved.id,
        before={"status": OrderStatus.COLLECTED.value},
        after={"status": moved.status.value, "points": moved.points, "reason": reason},
        town_id=moved.town_id, village_id=moved.village_id,
    )  # fmt: skip
    return moved


# The job


async def expire_due_order(session: AsyncSession, now: datetime | None = None) -> bool:
    """Expire one order past its deadline and give back its points, stock and allowance;
    False when none is due. Run each in a transaction of its own (the CLI loops).

    Safe with several processes: each takes a due order with SKIP LOCKED (one being collected
    or cancelled right now is left to that request). One order per transaction, because a
    transaction that held one order's chain while taking the next order's items could wait on
    a request that is itself waiting for that chain.
    """
    now = now or clock.now()
    order_id = (
        await session.execute(
            select(col(ShopOrder.id))
            .where(col(ShopOrder.status) == OrderStatus.RESERVED, col(ShopOrder.expires_at) <= now)
            .order_by(col(ShopOrder.expires_at))
            .limit(1)
            .with_for_update(skip_locked=True)
        )
    ).scalar_one_or_none()
    if order_id is None:
        return False
    moved = await _move(
        session,
        order_id,
        from_status=OrderStatus.RESERVED,
        to_status=OrderStatus.EXPIRED,
        actor=None,
        reason="逾期未取",
    )
    assert moved is not None  # locked above, and still reserved
    await _give_back(session, moved, None)
    return True


async def remind_due_orders(
    session: AsyncSession, settings: Settings, now: datetime | None = None, *, batch: int = 100
) -> int:
    """Queue the order_expiring message for up to `batch` uncollected orders whose reminder is
    due; returns how many orders were reminded (0: none is due). Run each call in a transaction
    of its own (the CLI loops).

    An order is reminded SHOP_ORDER_REMINDER_HOURS before its pickup deadline; one placed with
    no more than that left is reminded halfway to its deadline instead, so it is never told at
    the moment it is placed that it is about to expire, yet still hears before it does.

    Once per order, however many processes run the job: each takes due orders with SKIP LOCKED
    and marks them in the same statement, whose `reminded_at IS NULL` lets only one mark win;
    the messages are queued in that transaction, so a job that fails rolls the marks back with
    them. Only order rows are locked (the first in the shop's lock order), and never waited for.
    """
    now = now or clock.now()
    lead = timedelta(hours=settings.shop_order_reminder_hours)
    expires, placed = col(ShopOrder.expires_at), col(ShopOrder.created_at)
    # Halfway: as much time has passed since placing as is left.
    remind = case(
        (expires - placed > lead, expires - lead <= now), else_=now - placed >= expires - now
    )
    open_unreminded = (
        col(ShopOrder.status) == OrderStatus.RESERVED,
        col(ShopOrder.reminded_at).is_(None),
        col(ShopOrder.expires_at) > now,
    )
    due = (
        select(col(ShopOrder.id))
        .where(*open_unreminded, remind)
        .order_by(col(ShopOrder.expires_at))
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    reminded = list(
        (
            await session.execute(
                update(ShopOrder)
                .where(col(ShopOrder.id).in_(due), *open_unreminded)
                .values(reminded_at=now)
                .returning(ShopOrder)
                .execution_options(populate_existing=True)
            )
        ).scalars()
    )
    if not reminded:
        return 0
    lines = await _lines_by_order(session, [order.id for order in reminded])
    shop_ids = {order.shop_id for order in reminded}
    shops = await session.execute(
        select(col(Shop.id), col(Shop.name)).where(col(Shop.id).in_(shop_ids))
    )
    shop_names = {shop_id: name for shop_id, name in shops}
    for order in reminded:
        await _tell_expiring(session, order, lines[order.id], shop_names[order.shop_id])
    return len(reminded)


# Within a thing's 20 characters: the villager is reminded how to collect, and what happens
# if they don't.
PICKUP_HINT = "凭取货码到店领取，逾期积分退回"


def expiring_message(
    lines: Sequence[LineTerms], shop_name: str, expires_at: datetime
) -> dict[str, str]:
    """The order_expiring template: thing1 the goods (the first item and its count, and how
    many kinds more), time2 the pickup deadline, thing3 the shop, thing4 how to collect."""
    # Sorted as the order shows them, so the message names the order's first line.
    first = min(lines, key=lambda line: (line.item_name, str(line.item_id)))
    more = f"等{len(lines)}种" if len(lines) > 1 else ""
    count = f"×{first.quantity}{more}"
    # The name gives way, so the count survives a thing's 20 characters.
    room = notifications.MAX_LENGTH["thing"] - len(count)
    name = first.item_name if len(first.item_name) <= room else first.item_name[: room - 1] + "…"
    return {
        "thing1": name + count,
        "time2": wechat_time(expires_at),
        "thing3": shop_name,
        "thing4": PICKUP_HINT,
    }


async def _tell_expiring(
    session: AsyncSession, order: ShopOrder, lines: Sequence[LineTerms], shop_name: str
) -> None:
    """To the villager who placed the order; when they cannot be reached (WeChat unbound, or
    no longer of the village), to the household's bound members: any member's phone shows the
    order's pickup code, and the points that come back are the household's."""
    assert order.expires_at is not None  # an order ahead
    data = expiring_message(lines, shop_name, order.expires_at)
    told = await notifications.notify_person(
        session,
        village_id=order.village_id,
        person_id=order.created_by,
        kind=NotificationKind.ORDER_EXPIRING,
        data=data,
    )
    if not told:
        await notifications.notify_household(
            session,
            village_id=order.village_id,
            household_id=order.household_id,
            kind=NotificationKind.ORDER_EXPIRING,
            data=data,
        )
