"""Tokens, password hashing and the current-principal dependency."""

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Annotated, Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.bounded import Bounded
from app.config import Settings
from app.db import DriverSource, SessionDep, driver_of, hot_reads
from app.errors import Forbidden, Unauthorized
from app.models import Role

JWT_ALGORITHM = "HS256"
ACCESS = "access"
BIND = "bind"
LEEWAY_SECONDS = 5

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both failures take the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_secret_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def token_digest(token: str) -> str:
    """Refresh tokens and invite codes are stored only as digests."""
    return hashlib.sha256(token.encode()).hexdigest()


def encode_token(
    settings: Settings, *, subject: str, kind: str, ttl: timedelta, **claims: Any
) -> tuple[str, datetime]:
    now = datetime.now(UTC)
    expires = now + ttl
    payload = {
        "iss": settings.jwt_issuer,
        "aud": f"{settings.jwt_audience}:{kind}",
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": expires,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode(payload, settings.jwt_secret, algorithm=JWT_ALGORITHM), expires


def invalid_token(
    detail: str, *, code: str, title: str, keeps_changes: bool = False
) -> Unauthorized:
    """A 401 whose WWW-Authenticate tells the client to log in again (RFC 6750 §3.1)."""
    return Unauthorized(
        detail,
        code=code,
        title=title,
        headers={"WWW-Authenticate": 'Bearer realm="village-points", error="invalid_token"'},
        keeps_changes=keeps_changes,
    )


def decode_token(settings: Settings, token: str, *, kind: str) -> dict[str, Any]:
    """Only our algorithm, issuer and audience are accepted; the header's `alg` is ignored.

    Each kind of token has its own audience, so a bind ticket is never an access token.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[JWT_ALGORITHM],
            audience=f"{settings.jwt_audience}:{kind}",
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError as exc:
        raise invalid_token(
            "The token has expired.", code="auth.token_expired", title="登录已过期，请重新登录"
        ) from exc
    except jwt.PyJWTError as exc:
        raise invalid_token(
            "The token is not valid.", code="auth.token_invalid", title="登录凭证无效，请重新登录"
        ) from exc
    return claims


def claim_uuid(claims: dict[str, Any], name: str) -> uuid.UUID:
    """A UUID claim; our own tokens always carry one, so anything else is a bad token."""
    try:
        return uuid.UUID(str(claims[name]))
    except (KeyError, ValueError) as exc:
        raise invalid_token(
            "The token is not valid.", code="auth.token_invalid", title="登录凭证无效，请重新登录"
        ) from exc


def session_ended() -> Unauthorized:
    return invalid_token(
        "This login has ended; log in again.",
        code="auth.session_revoked",
        title="登录已失效，请重新登录",
    )


@dataclass(frozen=True)
class Grant:
    role: Role
    town_id: uuid.UUID | None
    village_id: uuid.UUID | None
    village_group_ids: tuple[uuid.UUID, ...] = ()
    # A shop attendant limited to one shop; None: every shop of the village.
    shop_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Principal:
    person_id: uuid.UUID
    session_id: uuid.UUID
    grants: tuple[Grant, ...] = ()
    household_id: uuid.UUID | None = None
    household_village_id: uuid.UUID | None = None
    # Town of each village the principal holds a village-level grant in or lives in.
    village_towns: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)

    @property
    def is_district_admin(self) -> bool:
        return any(g.role is Role.DISTRICT_ADMIN for g in self.grants)

    def has_role(self, *roles: Role) -> bool:
        return self.is_district_admin or any(g.role in roles for g in self.grants)

    def village_ids(self, *roles: Role) -> set[uuid.UUID]:
        return {g.village_id for g in self.grants if g.role in roles and g.village_id}

    def town_ids(self, *roles: Role) -> set[uuid.UUID]:
        return {g.town_id for g in self.grants if g.role in roles and g.town_id}

    def supervised_town_ids(self) -> set[uuid.UUID]:
        return self.town_ids(Role.TOWN_SUPERVISOR)

    def is_village_admin_of(self, village_id: uuid.UUID | None) -> bool:
        return village_id is not None and village_id in self.village_ids(Role.VILLAGE_ADMIN)


_bearer = HTTPBearer(auto_error=False, description="Access token from a login endpoint")


# One round trip, as every authenticated request runs it: the login session, the live grants
# (read on every request so a change of roles applies to the very next one), the household
# membership and the towns of the villages those name. Sent straight to the driver, which
# prepares it once per pooled connection: SQLAlchemy's execution and row machinery cost more
# than the statement itself here. The JSON arrives decoded (SQLAlchemy's asyncpg dialect sets
# the json codec on every connection it opens).
_PRINCIPAL = """
    SELECT s.person_id, s.revoked_at IS NOT NULL AS revoked, s.caller_version,
           m.household_id, m.village_id AS household_village_id,
           coalesce((
               SELECT json_agg(json_build_array(
                   g.role, g.town_id, g.village_id, g.village_group_ids, g.shop_id))
               FROM role_grant g WHERE g.person_id = s.person_id AND g.revoked_at IS NULL
           ), '[]') AS grants,
           coalesce((
               SELECT json_object_agg(v.id, v.town_id) FROM village v
               WHERE v.id IN (
                   SELECT m.village_id
                   UNION SELECT g.village_id FROM role_grant g
                   WHERE g.person_id = s.person_id AND g.revoked_at IS NULL)
           ), '{}') AS village_towns
    FROM login_session s
    LEFT JOIN household_member m ON m.person_id = s.person_id
    WHERE s.id = $1
"""


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value is not None else None


async def load_principal(
    session: DriverSource, person_id: uuid.UUID, session_id: uuid.UUID
) -> Principal:
    """On a session (in its transaction) or on a hot read's asyncpg connection."""
    principal, _ = await _load_caller(session, person_id, session_id)
    return principal


async def _load_caller(
    source: DriverSource, person_id: uuid.UUID, session_id: uuid.UUID
) -> tuple[Principal, int]:
    """The caller, and the version of it read in the same statement (KnownCallers)."""
    driver = await driver_of(source)
    row = await driver.fetchrow(_PRINCIPAL, session_id)
    if row is None or row["person_id"] != person_id or row["revoked"]:
        raise session_ended()
    grants = tuple(
        Grant(
            Role(role),
            _uuid(town_id),
            _uuid(village_id),
            tuple(uuid.UUID(g) for g in group_ids or ()),
            _uuid(shop_id),
        )
        for role, town_id, village_id, group_ids, shop_id in row["grants"]
    )
    principal = Principal(
        person_id=person_id,
        session_id=session_id,
        grants=grants,
        household_id=row["household_id"],
        household_village_id=row["household_village_id"],
        village_towns={uuid.UUID(v): uuid.UUID(t) for v, t in row["village_towns"].items()},
    )
    return principal, row["caller_version"]


@dataclass(frozen=True)
class AccessClaims:
    person_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: float


class AccessTokens:
    """Access tokens already verified, by their text: a phone sends the same token with every
    request for its quarter of an hour, and checking its signature and claims again each time
    cost more than the request's own statement. Whether its login session still stands is
    read on every request regardless (`load_principal`). One per app, since the app's settings
    say which tokens are good."""

    def __init__(self, settings: Settings, size: int = 8192) -> None:
        self.settings = settings
        self._verified: Bounded[str, AccessClaims] = Bounded(size)

    def verify(self, token: str) -> AccessClaims:
        known = self._verified.get(token)
        # Wall-clock time, as PyJWT reads it for `exp` (not the points calendar's clock).
        if known is not None and time.time() < known.expires_at + LEEWAY_SECONDS:
            return known
        # Expired ones too go back through PyJWT, for its answer (auth.token_expired).
        claims = decode_token(self.settings, token, kind=ACCESS)
        verified = AccessClaims(
            claim_uuid(claims, "sub"), claim_uuid(claims, "sid"), float(claims["exp"])
        )
        self._verified.put(token, verified)
        return verified


class CallerChanged(Exception):
    """A hot read's remembered caller no longer stands (a logout, a grant or household changed
    since it was read). The route is answered again from the start, with the caller read
    afresh (app/routing.py); the read it was in sent nothing but its one SELECT."""


class KnownCallers:
    """The callers of hot reads, by login session, with the version each was read at
    (login_session.caller_version, which the database raises in the same transaction as any
    change to what a caller is read from: the person's grants, household, villages' towns).
    One per app; bounded like AccessTokens."""

    def __init__(self, size: int = 8192) -> None:
        self._known: Bounded[uuid.UUID, tuple[Principal, int]] = Bounded(size)

    def get(self, claims: AccessClaims) -> tuple[Principal, int] | None:
        known = self._known.get(claims.session_id)
        if known is None or known[0].person_id != claims.person_id:
            return None
        return known

    def remember(self, principal: Principal, version: int) -> None:
        self._known.put(principal.session_id, (principal, version))

    def forget(self, session_id: uuid.UUID) -> None:
        self._known.forget(session_id)


# True while the login stands at the version its caller was remembered at. Uncorrelated, so
# PostgreSQL evaluates it once per statement, before the read itself (a one-time filter).
_UNCHANGED = (
    "EXISTS (SELECT FROM login_session s WHERE s.id = ${session} AND s.revoked_at IS NULL"
    " AND s.caller_version = ${version})"
)
_STILL_STANDS = "SELECT " + _UNCHANGED.format(session=1, version=2)


@cache
def _checked(sql: str, count: int) -> str:
    """A read of `count` parameters, kept to its rows while the caller stands (its session and
    version the next two). One text per read, so the driver finds its prepared statement by a
    string it has hashed before. New lines around the read, so a comment ending it ends there."""
    unchanged = _UNCHANGED.format(session=count + 1, version=count + 2)
    return f"SELECT checked.* FROM (\n{sql}\n) checked WHERE {unchanged}"


class CheckedConnection:
    """A hot read's connection for a remembered caller: each statement sent through it carries
    the check that the caller still stands, in the same snapshot as the read. A statement
    that finds nothing is then either a read that found nothing or a check that failed, and
    one more statement tells which (versions only rise and logins never come back, so a
    check that holds now held then). A failed check raises CallerChanged."""

    def __init__(
        self, connection: Any, callers: KnownCallers, session_id: uuid.UUID, version: int
    ) -> None:
        self._connection = connection
        self._callers = callers
        self._session_id = session_id
        self._version = version

    async def _found(self, found: Any) -> Any:
        nothing = found is None or (isinstance(found, list) and not found)
        if nothing and not await self._connection.fetchval(
            _STILL_STANDS, self._session_id, self._version
        ):
            self._callers.forget(self._session_id)
            raise CallerChanged
        return found

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        checked = _checked(sql, len(args))
        return await self._found(
            await self._connection.fetchrow(checked, *args, self._session_id, self._version)
        )

    async def fetchval(self, sql: str, *args: Any) -> Any:
        checked = _checked(sql, len(args))
        return await self._found(
            await self._connection.fetchval(checked, *args, self._session_id, self._version)
        )

    async def fetch(self, sql: str, *args: Any) -> Any:
        checked = _checked(sql, len(args))
        return await self._found(
            await self._connection.fetch(checked, *args, self._session_id, self._version)
        )


def _claims(request: Request, credentials: HTTPAuthorizationCredentials | None) -> AccessClaims:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("An access token is required.", code="auth.token_missing")
    tokens: AccessTokens = request.app.state.access_tokens
    return tokens.verify(credentials.credentials)


def _named_in_log(request: Request, principal: Principal) -> Principal:
    # Named in the request's log line (app/metrics.py).
    request.state.principal_id = principal.person_id
    return principal


async def _caller(
    request: Request, source: DriverSource, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    claims = _claims(request, credentials)
    return _named_in_log(request, await load_principal(source, claims.person_id, claims.session_id))


async def current_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return await _caller(request, session, credentials)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


@dataclass(frozen=True)
class Reading:
    """The caller of a hot read, and where its statements run (app.db.hot_reads)."""

    principal: Principal
    connection: Any


class _HotReadBearer(HTTPBearer):
    """current_reading as the bearer scheme itself (the same scheme as _bearer in the OpenAPI):
    one dependency where the scheme and its caller were two, each a pass of FastAPI's solving
    on every one of the phone's reads."""

    async def __call__(self, request: Request) -> Reading:  # type: ignore[override]
        return await current_reading(request, await super().__call__(request))


async def current_reading(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Reading:
    """current_principal for the villager's opening reads, on a connection of the read pool
    rather than a session: each of those reads is one statement sent to the driver. A caller
    read before is not read again: the read's own statement checks that it still stands
    (CheckedConnection), so the read costs one round trip instead of two."""
    claims = _claims(request, credentials)
    connection = hot_reads(request)
    callers: KnownCallers = request.app.state.callers
    known = callers.get(claims)
    if known is not None:
        principal, version = known
        checked = CheckedConnection(connection, callers, principal.session_id, version)
        return Reading(_named_in_log(request, principal), checked)
    principal, version = await _load_caller(connection, claims.person_id, claims.session_id)
    callers.remember(principal, version)
    return Reading(_named_in_log(request, principal), connection)


ReadingDep = Annotated[
    Reading,
    Depends(
        _HotReadBearer(
            auto_error=False, description=_bearer.model.description, scheme_name=_bearer.scheme_name
        )
    ),
]


def require_roles(*roles: Role) -> Any:
    """A dependency that lets through callers holding one of `roles` somewhere (403 otherwise).

    Whether the object touched lies in that scope is decided by the service's query (404).
    """

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.has_role(*roles):
            raise Forbidden(f"Requires one of: {', '.join(r.value for r in roles)}.")
        return principal

    dependency.__name__ = "require_" + "_or_".join(r.value for r in roles)
    return Depends(dependency)


DistrictAdmin = Annotated[Principal, require_roles(Role.DISTRICT_ADMIN)]
OrgReader = Annotated[Principal, require_roles(Role.DISTRICT_ADMIN, Role.TOWN_SUPERVISOR)]
VillageAdmin = Annotated[Principal, require_roles(Role.VILLAGE_ADMIN)]
HouseholdReader = Annotated[
    Principal,
    require_roles(Role.TOWN_SUPERVISOR, Role.VILLAGE_ADMIN, Role.SCORING_LEADER, Role.SCORER),
]
