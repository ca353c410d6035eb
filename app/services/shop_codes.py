"""Signed shop codes: the household's rotating pay code, the printed household card, and an
order's pickup code.

Each is text for a QR code: fields joined by dots, then an HMAC-SHA256 of them (truncated to
128 bits) under a key derived from the JWT secret, so a code can't be made or altered without
the server. A pay code names its shop and expires within PAY_CODE_SECONDS; its nonce is
recorded when it is spent (shop_code_use's primary key), so it redeems once however many
counters scan it at the same moment. A card code does not expire; revoking the card voids it.
"""

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app import clock
from app.config import Settings
from app.errors import Conflict, Unprocessable
from app.schemas.shop import CodeKind

PAY_CODE_SECONDS = 90
_PREFIX = {CodeKind.PAY: "VP1P", CodeKind.CARD: "VP1C", CodeKind.PICKUP: "VP1O"}
_KINDS = {prefix: kind for kind, prefix in _PREFIX.items()}
_FIELDS = {CodeKind.PAY: 4, CodeKind.CARD: 2, CodeKind.PICKUP: 2}


def _key(settings: Settings) -> bytes:
    # Its own key, so a shop code can never be confused with a token signed by the JWT secret.
    return hmac.new(
        settings.jwt_secret.encode(), b"village-points/shop-codes/v1", "sha256"
    ).digest()


def _signature(settings: Settings, message: str) -> str:
    digest = hmac.new(_key(settings), message.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _sign(settings: Settings, kind: CodeKind, *fields: str) -> str:
    message = ".".join([_PREFIX[kind], *fields])
    return f"{message}.{_signature(settings, message)}"


def pay_code(
    settings: Settings, shop_id: uuid.UUID, household_id: uuid.UUID, now: datetime | None = None
) -> tuple[str, datetime]:
    expires = (now or clock.now()) + timedelta(seconds=PAY_CODE_SECONDS)
    code = _sign(
        settings, CodeKind.PAY,
        shop_id.hex, household_id.hex, uuid.uuid4().hex, str(int(expires.timestamp())),
    )  # fmt: skip
    return code, expires.replace(microsecond=0)


def card_code(settings: Settings, household_id: uuid.UUID, card_id: uuid.UUID) -> str:
    return _sign(settings, CodeKind.CARD, household_id.hex, card_id.hex)


def pickup_code(settings: Settings, shop_id: uuid.UUID, order_id: uuid.UUID) -> str:
    return _sign(settings, CodeKind.PICKUP, shop_id.hex, order_id.hex)


@dataclass(frozen=True)
class ScannedCode:
    kind: CodeKind
    household_id: uuid.UUID | None = None
    shop_id: uuid.UUID | None = None
    nonce: uuid.UUID | None = None
    expires_at: datetime | None = None
    card_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None


def forged() -> Unprocessable:
    return Unprocessable(
        "The code is not one this service made.",
        code="shop.code_forged",
        title="无效的兑换码",
    )


def expired() -> Conflict:
    return Conflict(
        "The code has expired; refresh it on the phone.",
        code="shop.code_expired",
        title="兑换码已过期，请刷新后重试",
    )


def other_shop() -> Conflict:
    return Conflict(
        "The code is for another shop.",
        code="shop.code_other_shop",
        title="该兑换码不属于本积分超市",
    )


def replayed() -> Conflict:
    return Conflict("The code was already used.", code="shop.code_replayed", title="该兑换码已使用")


def read_code(settings: Settings, code: str, shop_id: uuid.UUID) -> ScannedCode:
    """The code's fields, once its signature, expiry and shop check out."""
    message, _, signature = code.strip().rpartition(".")
    prefix, *fields = message.split(".")
    kind = _KINDS.get(prefix)
    if kind is None or len(fields) != _FIELDS[kind]:
        raise forged()
    if not hmac.compare_digest(signature.encode(), _signature(settings, message).encode()):
        raise forged()
    try:
        if kind is CodeKind.PAY:
            shop, household, nonce, expires = fields
            scanned = ScannedCode(
                kind,
                household_id=uuid.UUID(household),
                shop_id=uuid.UUID(shop),
                nonce=uuid.UUID(nonce),
                expires_at=datetime.fromtimestamp(int(expires), UTC),
            )
        elif kind is CodeKind.CARD:
            household, card = fields
            scanned = ScannedCode(kind, household_id=uuid.UUID(household), card_id=uuid.UUID(card))
        else:
            shop, order = fields
            scanned = ScannedCode(kind, shop_id=uuid.UUID(shop), order_id=uuid.UUID(order))
    except ValueError as exc:  # signed by us, so only a key leak could get here
        raise forged() from exc
    if scanned.expires_at is not None and scanned.expires_at <= clock.now():
        raise expired()
    if scanned.shop_id is not None and scanned.shop_id != shop_id:
        raise other_shop()
    return scanned
