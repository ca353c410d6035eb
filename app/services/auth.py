import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

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
    claim_uuid,
    decode_token,
    encode_token,
    invalid_token,
    new_secret_token,
    session_ended,
    token_digest,
    verify_password,
)

# Namespaces of the transaction-scoped advisory locks that serialise password attempts per
# account and per address, so parallel guesses cannot all pass the failure count at once.
_ACCOUNT_LOCK = 0x4C4F4731
_ADDRESS_LOCK = 0x4C4F4732


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
    # An upsert, because two first logins of one openid may race (a double tap, two codes);
    # a select-then-insert would answer the loser with a unique violation.
    values = insert(WechatIdentity).values(
        id=uuid.uuid4(), openid=ws.openid, unionid=ws.unionid, session_key=ws.session_key
    )
    upsert = values.on_conflict_do_update(
        index_elements=[col(WechatIdentity.openid)],
        set_={
            "session_key": values.excluded.session_key,
            "unionid": func.coalesce(values.excluded.unionid, col(WechatIdentity.unionid)),
            "updated_at": func.now(),
        },
    ).returning(col(WechatIdentity.id), col(WechatIdentity.person_id))
    identity_id, person_id = (await session.execute(upsert)).one()
    if person_id is not None:
        tokens = await start_login(session, settings, person_id, LoginMethod.WECHAT)
        return WechatLoginResult(status="ok", tokens=tokens)
    ticket, expires = encode_token(
        settings,
        subject=str(identity_id),
        kind=BIND,
        ttl=timedelta(minutes=settings.bind_ticket_minutes),
    )
    return WechatLoginResult(
        status="bind_required", bind_ticket=ticket, bind_ticket_expires_at=expires
    )


async def bind_wechat(
    session: AsyncSession,
    settings: Settings,
    wechat: WechatClient,
    data: WechatBind,
    address: str,
) -> TokenPair:
    claims = decode_token(settings, data.bind_ticket, kind=BIND)
    identity = (
        await session.execute(
            select(WechatIdentity)
            .where(col(WechatIdentity.id) == claim_uuid(claims, "sub"))
            .with_for_update()
        )
    ).scalar_one_or_none()
    if identity is None:
        raise invalid_token(
            "The bind ticket is not valid.",
            code="auth.token_invalid",
            title="登录凭证无效，请重新登录",
        )
    if identity.person_id is not None:
        raise Conflict(
            "This WeChat account is already bound.", code="auth.already_bound", title="该微信已绑定"
        )

    if data.invite_code is not None:
        # Guessing codes is throttled like passwords: per WeChat account and per address.
        account = f"wechat:{identity.id}"
        await _refuse_if_throttled(session, settings, account, address)
        try:
            person_id = await _redeem_invite(session, data.invite_code)
        except NotFound as exc:
            session.add(LoginAttempt(username=account, address=address, succeeded=False))
            await session.flush()
            exc.keeps_changes = True
            raise
    else:
        assert data.phone_code is not None
        person_id = await _person_by_wechat_phone(session, wechat, data.phone_code)

    # Locking the person makes two WeChat accounts binding one person at once queue up here,
    # so the second sees the first's binding instead of hitting the unique constraint.
    # NO KEY UPDATE: rows that merely reference the person (a login elsewhere) need not wait.
    await session.execute(
        select(col(Person.id)).where(col(Person.id) == person_id).with_for_update(key_share=True)
    )
    taken = (
        await session.execute(
            select(col(WechatIdentity.id)).where(col(WechatIdentity.person_id) == person_id)
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
    # A code whose person has since left every household no longer admits anyone.
    person_id = (
        await session.execute(
            update(InviteCode)
            .where(
                col(InviteCode.code_hash) == token_digest(code),
                col(InviteCode.used_at).is_(None),
                col(InviteCode.expires_at) > func.now(),
                exists().where(col(HouseholdMember.person_id) == col(InviteCode.person_id)),
            )
            .values(used_at=func.now())
            .returning(col(InviteCode.person_id))
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
                select(col(Person.id))
                .join(HouseholdMember, col(HouseholdMember.person_id) == col(Person.id))
                .outerjoin(WechatIdentity, col(WechatIdentity.person_id) == col(Person.id))
                .where(col(Person.phone) == phone, col(WechatIdentity.id).is_(None))
                .distinct()
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


async def _refuse_if_throttled(
    session: AsyncSession, settings: Settings, account: str, address: str
) -> None:
    """Too many recent failures for this account or from this address: 429. Serialised per
    account and address, so racing guesses are each counted before the next is judged."""
    # Taken in this order everywhere (account, then address), so they cannot deadlock.
    for namespace, key in ((_ACCOUNT_LOCK, account), (_ADDRESS_LOCK, address)):
        await session.execute(select(func.pg_advisory_xact_lock(namespace, func.hashtext(key))))
    since = _now() - timedelta(minutes=settings.login_window_minutes)
    account_failures, address_failures = (
        await session.execute(
            select(
                func.count().filter(col(LoginAttempt.username) == account),
                func.count().filter(col(LoginAttempt.address) == address),
            ).where(col(LoginAttempt.succeeded).is_(False), col(LoginAttempt.at) >= since)
        )
    ).one()
    if (
        account_failures >= settings.login_max_failures_per_account
        or address_failures >= settings.login_max_failures_per_address
    ):
        raise TooManyRequests(
            "Too many failed attempts; wait a few minutes.",
            code="auth.too_many_attempts",
            title="失败次数过多，请稍后再试",
            headers={"Retry-After": str(settings.login_window_minutes * 60)},
        )


async def password_login(
    session: AsyncSession, settings: Settings, username: str, password: str, address: str
) -> TokenPair:
    await _refuse_if_throttled(session, settings, username, address)
    person = (
        await session.execute(select(Person).where(col(Person.username) == username))
    ).scalar_one_or_none()
    # verify_password hashes even for an unknown user, so both failures cost the same time;
    # argon2 is deliberately slow, so it runs off the event loop.
    ok = await asyncio.to_thread(
        verify_password, person.password_hash if person else None, password
    )
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
    # The row lock makes a concurrent second use of one token wait and then see it as used.
    row = (
        await session.execute(
            select(RefreshToken, LoginSession)
            .join(LoginSession, col(LoginSession.id) == col(RefreshToken.session_id))
            .where(col(RefreshToken.token_hash) == token_digest(token))
            .with_for_update()
        )
    ).first()
    if row is None:
        raise invalid_token(
            "The refresh token is not valid.",
            code="auth.refresh_invalid",
            title="登录凭证无效，请重新登录",
        )
    stored, login = row
    if login.revoked_at is not None:
        raise session_ended()
    if stored.used_at is not None:
        # A rotated token came back: someone holds a copy. End the whole login.
        login.revoked_at = _now()
        login.revoked_reason = "refresh_reuse"
        await session.flush()
        raise invalid_token(
            "The refresh token was already used; this login has been ended.",
            code="auth.refresh_reused",
            title="登录已失效，请重新登录",
            keeps_changes=True,
        )
    if stored.expires_at <= _now():
        raise invalid_token(
            "The refresh token has expired.",
            code="auth.refresh_expired",
            title="登录已过期，请重新登录",
        )
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
        .where(col(LoginSession.id) == principal.session_id, col(LoginSession.revoked_at).is_(None))
        .values(revoked_at=func.now(), revoked_reason="logout")
    )
