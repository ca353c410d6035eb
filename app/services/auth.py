import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import Conflict, NotFound, TooManyRequests, Unauthorized
from app.integrations.wechat import WechatClient
from app.models import (
    HouseholdMember,
    InviteCode,
    LoginAttempt,
    LoginMethod,
    LoginSession,
    Person,
    RefreshToken,
    WechatIdentity,
)
from app.schemas.auth import TokenPair, WechatBind, WechatLoginResult
from app.security import (
    ACCESS,
    BIND,
    Principal,
    decode_token,
    encode_token,
    new_secret_token,
    token_digest,
    verify_password,
)


def _now() -> datetime:
    return datetime.now(UTC)


async def _new_refresh_token(
    session: AsyncSession, settings: Settings, session_id: uuid.UUID
) -> tuple[str, datetime]:
    token = new_secret_token()
    expires = _now() + timedelta(days=settings.refresh_token_days)
    session.add(
        RefreshToken(session_id=session_id, token_hash=token_digest(token), expires_at=expires)
    )
    await session.flush()
    return token, expires


def _access_token(
    settings: Settings, person_id: uuid.UUID, session_id: uuid.UUID
) -> tuple[str, datetime]:
    return encode_token(
        settings,
        subject=str(person_id),
        kind=ACCESS,
        ttl=timedelta(minutes=settings.access_token_minutes),
        sid=str(session_id),
    )


async def start_login(
    session: AsyncSession, settings: Settings, person_id: uuid.UUID, method: LoginMethod
) -> TokenPair:
    login = LoginSession(person_id=person_id, method=method)
    session.add(login)
    await session.flush()
    access, access_expires = _access_token(settings, person_id, login.id)
    refresh, refresh_expires = await _new_refresh_token(session, settings, login.id)
    return TokenPair(
        access_token=access,
        expires_at=access_expires,
        refresh_token=refresh,
        refresh_expires_at=refresh_expires,
    )


async def wechat_login(
    session: AsyncSession, settings: Settings, wechat: WechatClient, code: str
) -> WechatLoginResult:
    ws = await wechat.code_to_session(code)
    identity = (
        await session.execute(
            select(WechatIdentity).where(WechatIdentity.openid == ws.openid).with_for_update()
        )
    ).scalar_one_or_none()
    if identity is None:
        identity = WechatIdentity(openid=ws.openid, unionid=ws.unionid, session_key=ws.session_key)
        session.add(identity)
    else:
        identity.session_key = ws.session_key
        identity.unionid = ws.unionid or identity.unionid
        identity.updated_at = _now()
    await session.flush()
    if identity.person_id is not None:
        tokens = await start_login(session, settings, identity.person_id, LoginMethod.WECHAT)
        return WechatLoginResult(status="ok", tokens=tokens)
    ticket, expires = encode_token(
        settings,
        subject=str(identity.id),
        kind=BIND,
        ttl=timedelta(minutes=settings.bind_ticket_minutes),
    )
    return WechatLoginResult(
        status="bind_required", bind_ticket=ticket, bind_ticket_expires_at=expires
    )


async def bind_wechat(
    session: AsyncSession, settings: Settings, wechat: WechatClient, data: WechatBind
) -> TokenPair:
    claims = decode_token(settings, data.bind_ticket, kind=BIND)
    identity = (
        await session.execute(
            select(WechatIdentity)
            .where(WechatIdentity.id == uuid.UUID(claims["sub"]))
            .with_for_update()
        )
    ).scalar_one_or_none()
    if identity is None:
        raise Unauthorized("The bind ticket is not valid.", code="auth.token_invalid")
    if identity.person_id is not None:
        raise Conflict(
            "This WeChat account is already bound.", code="auth.already_bound", title="该微信已绑定"
        )

    if data.invite_code is not None:
        person_id = await _redeem_invite(session, data.invite_code)
    else:
        assert data.phone_code is not None
        person_id = await _person_by_wechat_phone(session, wechat, data.phone_code)

    taken = (
        await session.execute(
            select(WechatIdentity.id).where(WechatIdentity.person_id == person_id)
        )
    ).first()
    if taken is not None:
        raise Conflict(
            "This person is already bound to another WeChat account.",
            code="auth.person_already_bound",
            title="该村民已绑定其他微信",
        )
    identity.person_id = person_id
    identity.updated_at = _now()
    await session.flush()
    return await start_login(session, settings, person_id, LoginMethod.WECHAT)


async def _redeem_invite(session: AsyncSession, code: str) -> uuid.UUID:
    # The conditional UPDATE makes a code single-use even when two phones race for it.
    person_id = (
        await session.execute(
            update(InviteCode)
            .where(
                InviteCode.code_hash == token_digest(code),
                InviteCode.used_at.is_(None),  # type: ignore[union-attr]
                InviteCode.expires_at > func.now(),
            )
            .values(used_at=func.now())
            .returning(InviteCode.person_id)
        )
    ).scalar_one_or_none()
    if person_id is None:
        raise NotFound(
            "The invite code is unknown, used or expired.",
            code="auth.invite_invalid",
            title="邀请码无效、已使用或已过期",
        )
    return person_id


async def _person_by_wechat_phone(
    session: AsyncSession, wechat: WechatClient, phone_code: str
) -> uuid.UUID:
    phone = await wechat.phone_number(phone_code)
    candidates = (
        (
            await session.execute(
                select(Person.id)
                .join(HouseholdMember, HouseholdMember.person_id == Person.id)
                .where(Person.phone == phone)
                .outerjoin(WechatIdentity, WechatIdentity.person_id == Person.id)
                .where(WechatIdentity.id.is_(None))  # type: ignore[union-attr]
            )
        )
        .scalars()
        .all()
    )
    if not candidates:
        raise NotFound(
            "No household member with this phone number is waiting to be bound.",
            code="auth.phone_not_registered",
            title="该手机号未登记，请向村管理员索取邀请码",
        )
    if len(candidates) > 1:
        raise Conflict(
            "Several household members share this phone number; use an invite code.",
            code="auth.phone_ambiguous",
            title="该手机号对应多位村民，请使用邀请码绑定",
        )
    return candidates[0]


async def password_login(
    session: AsyncSession, settings: Settings, username: str, password: str, address: str
) -> TokenPair:
    since = _now() - timedelta(minutes=settings.login_window_minutes)
    failures = (
        await session.execute(
            select(
                func.count().filter(LoginAttempt.username == username),
                func.count().filter(LoginAttempt.address == address),
            ).where(LoginAttempt.succeeded.is_(False), LoginAttempt.at >= since)  # type: ignore[attr-defined]
        )
    ).one()
    if (
        failures[0] >= settings.login_max_failures_per_account
        or failures[1] >= settings.login_max_failures_per_address
    ):
        raise TooManyRequests(
            "Too many failed logins; wait a few minutes.",
            code="auth.too_many_attempts",
            title="登录失败次数过多，请稍后再试",
            headers={"Retry-After": str(settings.login_window_minutes * 60)},
        )
    person = (
        await session.execute(select(Person).where(Person.username == username))
    ).scalar_one_or_none()
    # verify_password hashes even for an unknown user, so both failures cost the same time.
    ok = verify_password(person.password_hash if person else None, password)
    session.add(LoginAttempt(username=username, address=address, succeeded=ok))
    await session.flush()
    if not ok or person is None:
        raise Unauthorized(
            "Wrong username or password.",
            code="auth.bad_credentials",
            title="用户名或密码错误",
            keeps_changes=True,
        )
    return await start_login(session, settings, person.id, LoginMethod.PASSWORD)


async def refresh(session: AsyncSession, settings: Settings, token: str) -> TokenPair:
    row = (
        await session.execute(
            select(RefreshToken, LoginSession)
            .join(LoginSession, LoginSession.id == RefreshToken.session_id)
            .where(RefreshToken.token_hash == token_digest(token))
            .with_for_update()
        )
    ).first()
    if row is None:
        raise Unauthorized("The refresh token is not valid.", code="auth.refresh_invalid")
    stored, login = row
    if login.revoked_at is not None:
        raise Unauthorized("This login has ended; log in again.", code="auth.session_revoked")
    if stored.used_at is not None:
        # A rotated token came back: someone holds a copy. End the whole login.
        login.revoked_at = _now()
        login.revoked_reason = "refresh_reuse"
        await session.flush()
        raise Unauthorized(
            "The refresh token was already used; this login has been ended.",
            code="auth.refresh_reused",
            title="登录已失效，请重新登录",
            keeps_changes=True,
        )
    if stored.expires_at <= _now():
        raise Unauthorized("The refresh token has expired.", code="auth.refresh_expired")
    stored.used_at = _now()
    access, access_expires = _access_token(settings, login.person_id, login.id)
    new_refresh, refresh_expires = await _new_refresh_token(session, settings, login.id)
    return TokenPair(
        access_token=access,
        expires_at=access_expires,
        refresh_token=new_refresh,
        refresh_expires_at=refresh_expires,
    )


async def logout(session: AsyncSession, principal: Principal) -> None:
    await session.execute(
        update(LoginSession)
        .where(LoginSession.id == principal.session_id, LoginSession.revoked_at.is_(None))  # type: ignore[union-attr]
        .values(revoked_at=func.now(), revoked_reason="logout")
    )
