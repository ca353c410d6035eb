from fastapi import APIRouter, Request, status

from app.contract import problem_responses
from app.db import SessionDep
from app.integrations.wechat import WechatClient
from app.quick_routes import QuickRoute
from app.schemas.auth import (
    PasswordLogin,
    RefreshRequest,
    TokenPair,
    WechatBind,
    WechatLogin,
    WechatLoginResult,
)
from app.security import CurrentPrincipal
from app.services import auth as service

router = APIRouter(prefix="/auth", tags=["auth"], route_class=QuickRoute)
# What WeChat's own refusals and outages become (app/integrations/wechat.py).
WECHAT_PROBLEMS = problem_responses(403, 429, 502, 503)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _wechat(request: Request) -> WechatClient:
    return WechatClient(request.app.state.http, request.app.state.settings)


@router.post("/wechat/login", operation_id="wechat_login", responses=WECHAT_PROBLEMS)
async def wechat_login(
    request: Request, session: SessionDep, body: WechatLogin
) -> WechatLoginResult:
    """Exchange a `wx.login` code for tokens, or for a bind ticket if the user is new."""
    return await service.wechat_login(
        session, request.app.state.settings, _wechat(request), body.code
    )


@router.post("/wechat/bind", operation_id="wechat_bind", responses=WECHAT_PROBLEMS)
async def wechat_bind(request: Request, session: SessionDep, body: WechatBind) -> TokenPair:
    """Link a new WeChat user to a household member with an invite code or their phone."""
    return await service.bind_wechat(
        session, request.app.state.settings, _wechat(request), body, _address(request)
    )


@router.post("/password/login", operation_id="password_login", responses=problem_responses(429))
async def password_login(request: Request, session: SessionDep, body: PasswordLogin) -> TokenPair:
    return await service.password_login(
        session, request.app.state.settings, body.username, body.password, _address(request)
    )


@router.post("/refresh", operation_id="refresh_tokens")
async def refresh(request: Request, session: SessionDep, body: RefreshRequest) -> TokenPair:
    """Rotate the refresh token; presenting a used one ends the whole login."""
    return await service.refresh(session, request.app.state.settings, body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, operation_id="logout")
async def logout(session: SessionDep, principal: CurrentPrincipal) -> None:
    await service.logout(session, principal)
