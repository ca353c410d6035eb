"""Mini-program login through the fake WeChat server: code2Session, bind tickets, binding."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.integrations.fake_wechat import FakeWechatServer, session_key_for
from app.models import InviteCode, LoginAttempt, LoginMethod, LoginSession, Role, WechatIdentity
from app.security import BIND, encode_token, token_digest
from tests import factories
from tests.auth.conftest import (
    API,
    assert_problem,
    bearer,
    bind_ticket_for,
    issue_invite,
    make_villager,
    wechat_login,
)
from tests.conftest import TEST_APPID, TEST_SECRET


async def _identity(db: AsyncSession, openid: str) -> WechatIdentity | None:
    return (
        await db.execute(
            select(WechatIdentity)
            .where(col(WechatIdentity.openid) == openid)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def _invite(db: AsyncSession, code: str) -> InviteCode:
    return (
        await db.execute(
            select(InviteCode)
            .where(col(InviteCode.code_hash) == token_digest(code))
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def _logins(db: AsyncSession, person_id: object) -> list[LoginSession]:
    return list(
        (
            await db.execute(
                select(LoginSession)
                .where(col(LoginSession.person_id) == person_id)
                .order_by(col(LoginSession.created_at))
                .execution_options(populate_existing=True)
            )
        ).scalars()
    )


async def test_villager_logs_in_binds_with_invite_and_sees_household(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, wechat: FakeWechatServer
) -> None:
    v = await make_villager(db, settings)
    openid = "o-villager-e2e"
    session_key = session_key_for(openid)
    bodies: list[str] = []

    first = await wechat_login(client, f"{openid}#1")
    bodies.append(first.text)
    assert first.status_code == 200
    login = first.json()
    assert login["status"] == "bind_required"
    assert login["tokens"] is None
    assert login["bind_ticket"]
    # code2Session was called the way WeChat documents it.
    [call] = wechat.calls_to("code2session")
    assert call == {
        "appid": TEST_APPID,
        "secret": TEST_SECRET,
        "js_code": f"{openid}#1",
        "grant_type": "authorization_code",
    }
    identity = await _identity(db, openid)
    assert identity is not None
    assert identity.person_id is None
    assert identity.session_key == session_key

    code = await issue_invite(client, v)
    bound = await client.post(
        f"{API}/auth/wechat/bind",
        json={"bind_ticket": login["bind_ticket"], "invite_code": code.lower()},
    )
    bodies.append(bound.text)
    assert bound.status_code == 200, bound.text
    tokens = bound.json()
    assert tokens["token_type"] == "Bearer"
    identity = await _identity(db, openid)
    assert identity is not None
    assert identity.person_id == v.person.id
    assert (await _invite(db, code)).used_at is not None
    [session] = await _logins(db, v.person.id)
    assert session.method is LoginMethod.WECHAT
    assert session.revoked_at is None

    me = await client.get(f"{API}/me", headers=bearer(tokens["access_token"]))
    bodies.append(me.text)
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["person"]["id"] == str(v.person.id)
    assert body["household"]["id"] == str(v.household.id)
    assert [m["person_id"] for m in body["household"]["members"]] == [str(v.person.id)]
    assert body["grants"] == []

    # Next time the phone logs in with a fresh code, it gets tokens straight away.
    again = await wechat_login(client, f"{openid}#2")
    bodies.append(again.text)
    assert again.status_code == 200
    result = again.json()
    assert result["status"] == "ok"
    assert result["bind_ticket"] is None
    me = await client.get(f"{API}/me", headers=bearer(result["tokens"]["access_token"]))
    assert me.status_code == 200
    assert me.json()["person"]["id"] == str(v.person.id)
    assert len(await _logins(db, v.person.id)) == 2
    count = await db.scalar(
        select(func.count()).select_from(WechatIdentity).where(col(WechatIdentity.openid) == openid)
    )
    assert count == 1
    assert not any(session_key in text for text in bodies)


async def test_me_lists_role_grants_with_scopes(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    v = await make_villager(db, settings)
    group = await factories.create_group(db, v.village)
    await factories.grant(db, v.person, Role.SCORER, village=v.village, groups=[group])
    response = await client.get(
        f"{API}/me", headers=await factories.login_headers(db, settings, v.person)
    )
    assert response.status_code == 200
    [grant] = response.json()["grants"]
    assert grant["role"] == "scorer"
    assert grant["village_id"] == str(v.village.id)
    assert grant["town_id"] == str(v.village.town_id)
    assert grant["village_group_ids"] == [str(group.id)]


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        ({"errcode": 40029}, 400, "wechat.invalid_code"),
        ({"errcode": 40163}, 400, "wechat.invalid_code"),
        ({"errcode": 45011}, 429, "wechat.rate_limited"),
        ({"errcode": 40226}, 403, "wechat.user_blocked"),
        ({"errcode": 40013}, 502, "wechat.unexpected"),
        ({"http_status": 500}, 503, "wechat.unavailable"),
        ({"http_status": 502}, 503, "wechat.unavailable"),
        ({"delay_seconds": 1.5}, 503, "wechat.unavailable"),
    ],
    ids=["40029", "40163", "45011", "40226", "40013", "http500", "http502", "timeout"],
)
async def test_wechat_failures_are_clear_problems(
    client: httpx.AsyncClient,
    db: AsyncSession,
    wechat: FakeWechatServer,
    failure: dict[str, float],
    status: int,
    code: str,
) -> None:
    wechat.fail_next("code2session", **failure)  # type: ignore[arg-type]
    response = await wechat_login(client, "o-failure")
    body = assert_problem(response, status, code)
    if status == 429:
        assert response.headers["retry-after"] == "60"
    if status == 503:
        assert "retry-after" in response.headers
    assert "session_key" not in response.text
    assert body["instance"] == f"{API}/auth/wechat/login"
    # Not retried: only -1 (busy) is.
    assert len(wechat.calls_to("code2session")) == 1
    assert await _identity(db, "o-failure") is None


async def test_wechat_busy_is_retried_once(
    client: httpx.AsyncClient, db: AsyncSession, wechat: FakeWechatServer
) -> None:
    wechat.fail_next("code2session", errcode=-1)
    response = await wechat_login(client, "o-busy-once")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "bind_required"
    assert len(wechat.calls_to("code2session")) == 2
    assert await _identity(db, "o-busy-once") is not None


async def test_wechat_busy_twice_is_unavailable(
    client: httpx.AsyncClient, db: AsyncSession, wechat: FakeWechatServer
) -> None:
    wechat.fail_next("code2session", errcode=-1, times=2)
    response = await wechat_login(client, "o-busy-twice")
    assert_problem(response, 503, "wechat.unavailable")
    assert len(wechat.calls_to("code2session")) == 2
    assert await _identity(db, "o-busy-twice") is None


async def test_a_login_code_works_once(
    client: httpx.AsyncClient, db: AsyncSession, wechat: FakeWechatServer
) -> None:
    assert (await wechat_login(client, "o-once#x")).status_code == 200
    assert_problem(await wechat_login(client, "o-once#x"), 400, "wechat.invalid_code")
    identity = await _identity(db, "o-once")
    assert identity is not None
    assert identity.person_id is None


async def test_wechat_answering_garbage_is_not_a_500(
    client: httpx.AsyncClient, db: AsyncSession, wechat: FakeWechatServer
) -> None:
    wechat.fail_next("code2session", http_status=404)
    assert_problem(await wechat_login(client, "o-garbage"), 502, "wechat.unexpected")
    assert await _identity(db, "o-garbage") is None


async def test_openid_longer_than_wechats_is_not_a_500(
    client: httpx.AsyncClient, db: AsyncSession, wechat: FakeWechatServer
) -> None:
    # The fake answers with the code as openid, so a long code stands for a broken WeChat.
    openid = "o" * 65
    assert_problem(await wechat_login(client, openid), 502, "wechat.unexpected")
    assert await _identity(db, openid) is None


async def test_wechat_unreachable_is_unavailable(
    app_and_client: tuple[Any, httpx.AsyncClient], db: AsyncSession, settings: Settings
) -> None:
    app, client = app_and_client
    # Nothing listens on the discard port.
    app.state.settings = settings.model_copy(update={"wechat_api_base": "http://127.0.0.1:9"})
    try:
        assert_problem(await wechat_login(client, "o-unreachable"), 503, "wechat.unavailable")
    finally:
        app.state.settings = settings
    assert await _identity(db, "o-unreachable") is None


async def test_login_code_is_validated(
    client: httpx.AsyncClient, db: AsyncSession, wechat: FakeWechatServer
) -> None:
    for body in ({"code": "  "}, {"code": "o-extra", "openid": "o-extra"}, {"code": "x" * 129}):
        response = await client.post(f"{API}/auth/wechat/login", json=body)
        assert_problem(response, 422, "request.invalid")
    # Refused before WeChat was asked or anything was stored.
    assert wechat.calls_to("code2session") == []
    assert await _identity(db, "o-extra") is None


# Binding


async def test_bind_with_unknown_invite_code(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    v = await make_villager(db, settings)
    ticket = await bind_ticket_for(client, "o-unknown-invite")
    response = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "invite_code": "ZZZZ9999"}
    )
    assert_problem(response, 404, "auth.invite_invalid")
    identity = await _identity(db, "o-unknown-invite")
    assert identity is not None
    assert identity.person_id is None
    assert await _logins(db, v.person.id) == []


async def test_guessing_invite_codes_is_throttled(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    v = await make_villager(db, settings)
    code = await issue_invite(client, v)
    ticket = await bind_ticket_for(client, "o-guesser")
    for n in range(settings.login_max_failures_per_account):
        response = await client.post(
            f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "invite_code": f"ZZZZ{n:04d}"}
        )
        assert_problem(response, 404, "auth.invite_invalid")
    response = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "invite_code": code}
    )
    assert_problem(response, 429, "auth.too_many_attempts")
    assert response.headers["Retry-After"] == str(settings.login_window_minutes * 60)
    guesser = await _identity(db, "o-guesser")
    assert guesser is not None
    assert guesser.person_id is None
    # Refused while throttled, the right code is still good for the villager's own phone.
    assert (await _invite(db, code)).used_at is None
    rightful = await bind_ticket_for(client, "o-rightful")
    ok = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": rightful, "invite_code": code}
    )
    assert ok.status_code == 200, ok.text


async def test_password_logins_cannot_spend_a_wechat_accounts_bind_attempts(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await bind_ticket_for(client, "o-victim")
    victim = await _identity(db, "o-victim")
    assert victim is not None
    response = await client.post(
        f"{API}/auth/password/login",
        json={"username": f"wechat:{victim.id}", "password": "whatever"},
    )
    assert_problem(response, 422, "request.invalid")
    attempts = await db.scalar(select(func.count()).select_from(LoginAttempt))
    assert attempts == 0


async def test_bind_with_expired_invite_code(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    v = await make_villager(db, settings)
    code = await issue_invite(client, v)
    invite = await _invite(db, code)
    invite.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    await db.flush()
    ticket = await bind_ticket_for(client, "o-expired-invite")
    response = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "invite_code": code}
    )
    assert_problem(response, 404, "auth.invite_invalid")
    assert (await _invite(db, code)).used_at is None
    identity = await _identity(db, "o-expired-invite")
    assert identity is not None
    assert identity.person_id is None


async def test_invite_code_is_single_use(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    v = await make_villager(db, settings)
    code = await issue_invite(client, v)
    first = await bind_ticket_for(client, "o-single-use-1")
    second = await bind_ticket_for(client, "o-single-use-2")
    ok = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": first, "invite_code": code}
    )
    assert ok.status_code == 200
    used_at = (await _invite(db, code)).used_at
    assert used_at is not None
    response = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": second, "invite_code": code}
    )
    assert_problem(response, 404, "auth.invite_invalid")
    assert (await _invite(db, code)).used_at == used_at
    loser = await _identity(db, "o-single-use-2")
    assert loser is not None
    assert loser.person_id is None


async def test_a_new_invite_replaces_the_unused_one(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    v = await make_villager(db, settings)
    old = await issue_invite(client, v)
    new = await issue_invite(client, v)
    ticket = await bind_ticket_for(client, "o-replaced-invite")
    response = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "invite_code": old}
    )
    assert_problem(response, 404, "auth.invite_invalid")
    response = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "invite_code": new}
    )
    assert response.status_code == 200


async def test_invite_of_a_removed_member_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    v = await make_villager(db, settings)
    code = await issue_invite(client, v)
    removed = await client.delete(f"{API}/household-members/{v.member.id}", headers=v.admin_headers)
    assert removed.status_code == 204
    ticket = await bind_ticket_for(client, "o-removed-member")
    response = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "invite_code": code}
    )
    assert_problem(response, 404, "auth.invite_invalid")
    assert (await _invite(db, code)).used_at is None
    identity = await _identity(db, "o-removed-member")
    assert identity is not None
    assert identity.person_id is None
    assert await _logins(db, v.person.id) == []


async def test_bind_ticket_of_a_bound_identity_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    v = await make_villager(db, settings)
    other = await make_villager(db, settings)
    ticket = await bind_ticket_for(client, "o-rebind")
    code = await issue_invite(client, v)
    ok = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "invite_code": code}
    )
    assert ok.status_code == 200
    # The ticket is still within its lifetime; it must not move the WeChat to someone else.
    other_code = await issue_invite(client, other)
    response = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "invite_code": other_code}
    )
    assert_problem(response, 409, "auth.already_bound")
    identity = await _identity(db, "o-rebind")
    assert identity is not None
    assert identity.person_id == v.person.id
    assert (await _invite(db, other_code)).used_at is None
    assert await _logins(db, other.person.id) == []


async def test_person_bound_to_another_wechat_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    v = await make_villager(db, settings)
    db.add(WechatIdentity(openid="o-old-phone", session_key="k", person_id=v.person.id))
    await db.flush()
    code = await issue_invite(client, v)
    ticket = await bind_ticket_for(client, "o-new-phone")
    response = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "invite_code": code}
    )
    assert_problem(response, 409, "auth.person_already_bound")
    # The refusal changed nothing: the code can still be used once the old phone is unbound.
    assert (await _invite(db, code)).used_at is None
    identity = await _identity(db, "o-new-phone")
    assert identity is not None
    assert identity.person_id is None


@pytest.mark.parametrize(
    "body",
    [
        {"invite_code": "ABCD1234", "phone_code": "phone:13900000000"},
        {},
        {"invite_code": "AB"},
        {"invite_code": "ABCD1234", "person_id": "x"},
    ],
    ids=["both", "neither", "short", "extra"],
)
async def test_bind_payload_is_validated(
    client: httpx.AsyncClient, db: AsyncSession, body: dict[str, str]
) -> None:
    ticket = await bind_ticket_for(client, "o-bad-payload")
    response = await client.post(f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, **body})
    assert_problem(response, 422, "request.invalid")
    identity = await _identity(db, "o-bad-payload")
    assert identity is not None
    assert identity.person_id is None


async def test_bind_ticket_must_be_ours(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    v = await make_villager(db, settings)
    code = await issue_invite(client, v)
    ticket = await bind_ticket_for(client, "o-tampered-ticket")
    header, payload, signature = ticket.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    access = v.admin_headers["Authorization"].removeprefix("Bearer ")
    for bad in (tampered, access, "not-a-jwt"):
        response = await client.post(
            f"{API}/auth/wechat/bind", json={"bind_ticket": bad, "invite_code": code}
        )
        assert_problem(response, 401, "auth.token_invalid")
    assert (await _invite(db, code)).used_at is None


async def test_expired_bind_ticket(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    v = await make_villager(db, settings)
    code = await issue_invite(client, v)
    await bind_ticket_for(client, "o-expired-ticket")
    identity = await _identity(db, "o-expired-ticket")
    assert identity is not None
    ticket, _ = encode_token(
        settings, subject=str(identity.id), kind=BIND, ttl=timedelta(minutes=-5)
    )
    response = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "invite_code": code}
    )
    assert_problem(response, 401, "auth.token_expired")
    assert (await _invite(db, code)).used_at is None


# Binding with WeChat's phone-number API


async def test_bind_with_phone_number(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, wechat: FakeWechatServer
) -> None:
    v = await make_villager(db, settings, phone="13712345678")
    ticket = await bind_ticket_for(client, "o-phone")
    response = await client.post(
        f"{API}/auth/wechat/bind",
        json={"bind_ticket": ticket, "phone_code": "phone:13712345678"},
    )
    assert response.status_code == 200, response.text
    identity = await _identity(db, "o-phone")
    assert identity is not None
    assert identity.person_id == v.person.id
    [call] = wechat.calls_to("phone")
    assert call["code"] == "phone:13712345678"
    assert len(await _logins(db, v.person.id)) == 1


async def test_bind_with_unregistered_phone(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    await make_villager(db, settings, phone="13712345679")
    # A person with this number who belongs to no household is not a villager to bind.
    await factories.create_person(db, phone="13700000001")
    ticket = await bind_ticket_for(client, "o-phone-unknown")
    for phone in ("13700000000", "13700000001"):
        response = await client.post(
            f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "phone_code": f"phone:{phone}"}
        )
        assert_problem(response, 404, "auth.phone_not_registered")
    identity = await _identity(db, "o-phone-unknown")
    assert identity is not None
    assert identity.person_id is None


async def test_bind_with_shared_phone_is_ambiguous(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    await make_villager(db, settings, phone="13712340000")
    await make_villager(db, settings, phone="13712340000")
    ticket = await bind_ticket_for(client, "o-phone-shared")
    response = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "phone_code": "phone:13712340000"}
    )
    assert_problem(response, 409, "auth.phone_ambiguous")
    identity = await _identity(db, "o-phone-shared")
    assert identity is not None
    assert identity.person_id is None


async def test_phone_of_an_already_bound_person_is_not_registered(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    v = await make_villager(db, settings, phone="13712341111")
    db.add(WechatIdentity(openid="o-phone-first", session_key="k", person_id=v.person.id))
    await db.flush()
    ticket = await bind_ticket_for(client, "o-phone-second")
    response = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "phone_code": "phone:13712341111"}
    )
    assert_problem(response, 404, "auth.phone_not_registered")
    identity = await _identity(db, "o-phone-second")
    assert identity is not None
    assert identity.person_id is None


@pytest.mark.parametrize(
    ("api", "failure", "status", "code"),
    [
        ("phone", {"errcode": 40029}, 400, "wechat.invalid_code"),
        ("phone", {"http_status": 500}, 503, "wechat.unavailable"),
        ("phone", {"delay_seconds": 1.5}, 503, "wechat.unavailable"),
        ("token", {"http_status": 503}, 503, "wechat.unavailable"),
    ],
    ids=["phone-40029", "phone-500", "phone-timeout", "token-503"],
)
async def test_phone_api_failures(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    wechat: FakeWechatServer,
    api: str,
    failure: dict[str, float],
    status: int,
    code: str,
) -> None:
    await make_villager(db, settings, phone="13712342222")
    ticket = await bind_ticket_for(client, "o-phone-fail")
    wechat.fail_next(api, **failure)  # type: ignore[arg-type]
    response = await client.post(
        f"{API}/auth/wechat/bind", json={"bind_ticket": ticket, "phone_code": "phone:13712342222"}
    )
    assert_problem(response, status, code)
    identity = await _identity(db, "o-phone-fail")
    assert identity is not None
    assert identity.person_id is None
