"""WeChat server APIs over HTTP: code2Session, stable access token, phone number, subscribe
messages."""

from dataclasses import dataclass
from typing import Any

import httpx

from app.config import Settings
from app.errors import AppError, BadRequest, Forbidden, ServiceUnavailable, TooManyRequests

SYSTEM_BUSY = -1
INVALID_CODE = 40029
CODE_USED = 40163
RATE_LIMITED = 45011
HIGH_RISK_USER = 40226
# The access token is invalid (40001, 40014) or has expired (42001): fetch it again.
TOKEN_REJECTED = frozenset({40001, 40014, 42001})
USER_REFUSED = 43101
# The width of wechat_identity's openid, unionid and session_key columns.
MAX_ID_LENGTH = 64


@dataclass(frozen=True)
class WechatSession:
    openid: str
    session_key: str
    unionid: str | None


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int  # seconds the token has left, as WeChat counts them


@dataclass(frozen=True)
class SendResult:
    """WeChat's errcode (0 is sent), or None when WeChat gave no usable answer."""

    errcode: int | None
    errmsg: str


class WechatUnexpected(AppError):
    status = 502
    code = "wechat.unexpected"
    title = "微信服务返回异常"


def _error_for(errcode: int, errmsg: str) -> AppError:
    if errcode in (INVALID_CODE, CODE_USED):
        return BadRequest(
            "The WeChat login code is invalid or already used; call wx.login again.",
            code="wechat.invalid_code",
            title="微信登录凭证无效或已使用，请重新登录",
        )
    if errcode == RATE_LIMITED:
        return TooManyRequests(
            "WeChat is limiting login calls; try again in a minute.",
            code="wechat.rate_limited",
            title="登录太频繁，请稍后再试",
            headers={"Retry-After": "60"},
        )
    if errcode == HIGH_RISK_USER:
        return Forbidden(
            "WeChat has blocked this account from logging in.",
            code="wechat.user_blocked",
            title="该微信账号被限制登录",
        )
    if errcode == SYSTEM_BUSY:
        return _unavailable("WeChat is busy.", title="微信服务繁忙，请稍后再试")
    return WechatUnexpected(f"WeChat answered errcode {errcode}: {errmsg}")


def _unavailable(detail: str, *, title: str = "微信服务暂时不可用，请稍后再试") -> AppError:
    return ServiceUnavailable(
        detail, code="wechat.unavailable", title=title, headers={"Retry-After": "5"}
    )


def _errcode(body: dict[str, Any]) -> int:
    raw = body.get("errcode") or 0
    try:
        return int(raw)
    except (TypeError, ValueError) as exc:
        raise WechatUnexpected(f"WeChat answered errcode {raw!r}.") from exc


class WechatClient:
    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self._http = http
        self._settings = settings
        self._base = settings.wechat_api_base.rstrip("/")

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One call, retried once when WeChat says it is busy (errcode -1)."""
        for attempt in range(2):
            try:
                response = await self._http.request(method, self._base + path, **kwargs)
            except httpx.TransportError as exc:
                # Timeouts are transport errors too: the phone should retry, not see a 500.
                raise _unavailable("WeChat could not be reached in time.") from exc
            if response.status_code >= 500:
                raise _unavailable(f"WeChat answered HTTP {response.status_code}.")
            try:
                body = response.json()
            except ValueError as exc:
                raise WechatUnexpected("WeChat answered something that is not JSON.") from exc
            if not isinstance(body, dict):
                raise WechatUnexpected("WeChat answered something that is not an object.")
            errcode = _errcode(body)
            if errcode == SYSTEM_BUSY and attempt == 0:
                continue
            if errcode != 0:
                raise _error_for(errcode, str(body.get("errmsg", "")))
            return body
        raise AssertionError("unreachable")

    async def code_to_session(self, code: str) -> WechatSession:
        body = await self._call(
            "GET",
            "/sns/jscode2session",
            params={
                "appid": self._settings.wechat_appid,
                "secret": self._settings.wechat_secret,
                "js_code": code,
                "grant_type": "authorization_code",
            },
        )
        openid, session_key = body.get("openid"), body.get("session_key")
        if not isinstance(openid, str) or not isinstance(session_key, str) or not openid:
            raise WechatUnexpected("code2Session answered without openid or session_key.")
        unionid = body.get("unionid")
        unionid = unionid if isinstance(unionid, str) and unionid else None
        # WeChat's ids are 28-char strings; anything longer than our columns is not WeChat.
        if max(len(openid), len(session_key), len(unionid or "")) > MAX_ID_LENGTH:
            raise WechatUnexpected("code2Session answered ids longer than WeChat's.")
        return WechatSession(openid, session_key, unionid)

    async def stable_token(self, *, force_refresh: bool = False) -> AccessToken:
        # The stable token endpoint hands every caller the same token while it is valid (and
        # the next one in its last five minutes), so no caller invalidates another's token.
        # force_refresh does invalidate it: WeChat allows it 20 times a day, 30 s apart.
        body = await self._call(
            "POST",
            "/cgi-bin/stable_token",
            json={
                "grant_type": "client_credential",
                "appid": self._settings.wechat_appid,
                "secret": self._settings.wechat_secret,
                "force_refresh": force_refresh,
            },
        )
        token, expires_in = body.get("access_token"), body.get("expires_in")
        if not isinstance(token, str) or not token:
            raise WechatUnexpected("The access-token API answered without a token.")
        if not isinstance(expires_in, int) or expires_in <= 0:
            raise WechatUnexpected("The access-token API answered without expires_in.")
        return AccessToken(token, expires_in)

    async def access_token(self) -> str:
        return (await self.stable_token()).token

    async def phone_number(self, phone_code: str) -> str:
        token = await self.access_token()
        body = await self._call(
            "POST",
            "/wxa/business/getuserphonenumber",
            params={"access_token": token},
            json={"code": phone_code},
        )
        info = body.get("phone_info")
        phone = info.get("purePhoneNumber") if isinstance(info, dict) else None
        if not isinstance(phone, str) or not phone:
            raise WechatUnexpected("The phone-number API answered without a number.")
        return phone

    async def send_subscribe_message(
        self, access_token: str, message: dict[str, Any]
    ) -> SendResult:
        """subscribeMessage.send, once: the notification worker decides what to retry."""
        try:
            response = await self._http.post(
                self._base + "/cgi-bin/message/subscribe/send",
                params={"access_token": access_token},
                json=message,
            )
        except httpx.TransportError as exc:
            return SendResult(None, f"WeChat could not be reached: {type(exc).__name__}")
        if response.status_code >= 400:
            return SendResult(None, f"WeChat answered HTTP {response.status_code}")
        try:
            body = response.json()
            # subscribeMessage.send always answers an errcode, 0 on success: an answer
            # without one proves nothing was sent, so it is retried, never marked sent.
            errcode = int(body["errcode"])
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError):
            return SendResult(None, "WeChat answered something that is not an errcode")
        return SendResult(errcode, str(body.get("errmsg", "")))
