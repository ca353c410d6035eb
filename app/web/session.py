"""The staff web's sign-in: a session cookie over the API's own login sessions, and CSRF.

The cookie carries a signed token naming the person and the login session that
`services.auth.password_login` started, so signing out (`services.auth.logout`) or a revoked
login ends the web session on its very next request, exactly as it ends the API's tokens.
"""

import hmac
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import SessionDep
from app.errors import AppError, Forbidden, Unauthorized
from app.models import Role
from app.schemas.auth import TokenPair
from app.security import (
    Principal,
    claim_uuid,
    decode_token,
    encode_token,
    load_principal,
    new_secret_token,
)

WEB = "web"
SESSION_COOKIE = "vp_web"
CSRF_COOKIE = "vp_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
# A working day at the counter or in the fields; then the password again.
SESSION_TTL = timedelta(hours=12)
STAFF_ROLES = (
    Role.DISTRICT_ADMIN,
    Role.TOWN_SUPERVISOR,
    Role.VILLAGE_ADMIN,
    Role.SCORING_LEADER,
    Role.SCORER,
    Role.SHOP_ATTENDANT,
)


class SignInRequired(Unauthorized):
    """Not signed in (or the login ended): pages answer with a redirect to the sign-in page."""

    code = "web.sign_in_required"
    title = "请先登录"


class CsrfRefused(Forbidden):
    code = "web.csrf_invalid"
    title = "页面已过期，请刷新后重试"


def _secure(settings: Settings) -> bool:
    return settings.environment != "dev"


async def start_session(
    session: AsyncSession, response: Response, settings: Settings, tokens: TokenPair
) -> None:
    """The cookie for a password login, for staff only: a villager's login is refused (and,
    the transaction rolling back, never started)."""
    access = decode_token(settings, tokens.access_token, kind="access")
    ensure_staff(
        await load_principal(session, claim_uuid(access, "sub"), claim_uuid(access, "sid"))
    )
    cookie, _ = encode_token(
        settings, subject=access["sub"], kind=WEB, ttl=SESSION_TTL, sid=access["sid"]
    )
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(SESSION_TTL.total_seconds()),
        path="/web",
        httponly=True,
        secure=_secure(settings),
        samesite="lax",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/web")


def csrf_token(request: Request) -> str:
    """The double-submit token: the cookie's value, echoed in every form and htmx request.

    A page from another site can make the browser send the cookie, but cannot read it to put
    the same value in the form."""
    existing = request.cookies.get(CSRF_COOKIE)
    token = existing if existing and len(existing) >= 32 else new_secret_token()
    request.state.csrf = token
    return token


def keep_csrf_cookie(request: Request, response: Response) -> None:
    token = getattr(request.state, "csrf", None)
    if token and request.cookies.get(CSRF_COOKIE) != token:
        settings: Settings = request.app.state.settings
        response.set_cookie(
            CSRF_COOKIE,
            token,
            path="/web",
            httponly=True,
            secure=_secure(settings),
            samesite="strict",
        )


async def check_csrf(request: Request) -> None:
    if request.method in ("GET", "HEAD"):
        return
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else ""
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise CsrfRefused("The form's CSRF token does not match the cookie.")


async def web_principal(request: Request, session: SessionDep) -> Principal:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired("Sign in first.")
    settings: Settings = request.app.state.settings
    try:
        claims = decode_token(settings, token, kind=WEB)
        principal = await load_principal(
            session, claim_uuid(claims, "sub"), claim_uuid(claims, "sid")
        )
    except AppError as exc:
        raise SignInRequired("The web session has ended.") from exc
    ensure_staff(principal)
    return principal


def ensure_staff(principal: Principal) -> None:
    if not principal.has_role(*STAFF_ROLES):
        raise Forbidden(
            "The web pages are for staff; villagers use the mini-program.",
            code="web.staff_only",
            title="网页仅供工作人员使用，村民请使用小程序",
        )


def staff(*roles: Role) -> Any:
    """A page dependency: a signed-in member of staff holding one of `roles` (403 otherwise),
    and, for a form, its CSRF token checked."""

    async def dependency(
        principal: Annotated[Principal, Depends(web_principal)],
        _csrf: Annotated[None, Depends(check_csrf)],
    ) -> Principal:
        if not principal.has_role(*roles):
            raise Forbidden(f"Requires one of: {', '.join(r.value for r in roles)}.")
        return principal

    return Depends(dependency)
