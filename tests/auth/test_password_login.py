"""Staff password login: argon2, one answer for every failure, attempts limited and recorded."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import LoginAttempt, LoginMethod, LoginSession, Person
from tests import factories
from tests.auth.conftest import API, assert_problem, bearer

ADDRESS = "127.0.0.1"  # what httpx.ASGITransport reports as the client


async def _attempts(db: AsyncSession, username: str) -> list[tuple[str, bool]]:
    rows = await db.execute(
        select(col(LoginAttempt.address), col(LoginAttempt.succeeded))
        .where(col(LoginAttempt.username) == username)
        .order_by(col(LoginAttempt.at))
    )
    return [(r[0], r[1]) for r in rows]


async def _sessions(db: AsyncSession, person: Person) -> list[LoginSession]:
    return list(
        (
            await db.execute(
                select(LoginSession)
                .where(col(LoginSession.person_id) == person.id)
                .execution_options(populate_existing=True)
            )
        ).scalars()
    )


async def _login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(
        f"{API}/auth/password/login", json={"username": username, "password": password}
    )


async def test_staff_logs_in_with_password(client: httpx.AsyncClient, db: AsyncSession) -> None:
    village = await factories.create_village(db)
    staff = await factories.create_person(db, village, password="correct horse")
    assert staff.username is not None
    assert staff.password_hash is not None
    assert staff.password_hash.startswith("$argon2id$")

    response = await _login(client, staff.username, "correct horse")
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert set(tokens) == {
        "access_token",
        "token_type",
        "expires_at",
        "refresh_token",
        "refresh_expires_at",
    }
    assert await _attempts(db, staff.username) == [(ADDRESS, True)]
    [session] = await _sessions(db, staff)
    assert session.method is LoginMethod.PASSWORD
    me = await client.get(f"{API}/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json()["person"]["id"] == str(staff.id)
    assert me.json()["household"] is None


async def test_wrong_password_and_unknown_user_get_the_same_answer(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    staff = await factories.create_person(db, password="correct horse")
    assert staff.username is not None
    wrong = await _login(client, staff.username, "wrong horse")
    unknown = await _login(client, "nobody-here", "wrong horse")
    for response in (wrong, unknown):
        assert_problem(response, 401, "auth.bad_credentials")
    assert wrong.json() == unknown.json()
    # Every response carries its own request id; nothing else may tell the two apart.
    assert {**wrong.headers, "x-request-id": ""} == {**unknown.headers, "x-request-id": ""}
    # Recorded although the request failed: the limit depends on it.
    assert await _attempts(db, staff.username) == [(ADDRESS, False)]
    assert await _attempts(db, "nobody-here") == [(ADDRESS, False)]
    assert await _sessions(db, staff) == []


async def test_person_without_password_cannot_log_in(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    # A villager who only uses WeChat has a username but no password hash.
    person = await factories.create_person(db, username="wechat-only")
    response = await _login(client, "wechat-only", "not-a-real-password")
    assert_problem(response, 401, "auth.bad_credentials")
    assert await _attempts(db, "wechat-only") == [(ADDRESS, False)]
    assert await _sessions(db, person) == []


async def test_account_is_locked_after_repeated_failures(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    staff = await factories.create_person(db, password="correct horse")
    colleague = await factories.create_person(db, password="other horse")
    assert staff.username is not None
    assert colleague.username is not None
    limit = settings.login_max_failures_per_account
    for _ in range(limit):
        assert_problem(await _login(client, staff.username, "guess"), 401, "auth.bad_credentials")

    # Even the right password is refused now, and the refused try is not verified or counted.
    response = await _login(client, staff.username, "correct horse")
    assert_problem(response, 429, "auth.too_many_attempts")
    assert int(response.headers["retry-after"]) == settings.login_window_minutes * 60
    assert await _attempts(db, staff.username) == [(ADDRESS, False)] * limit
    assert await _sessions(db, staff) == []

    # The limit is per account: a colleague at the same address still gets in.
    assert (await _login(client, colleague.username, "other horse")).status_code == 200


async def test_failures_outside_the_window_do_not_count(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    staff = await factories.create_person(db, password="correct horse")
    assert staff.username is not None
    old = datetime.now(UTC) - timedelta(minutes=settings.login_window_minutes, seconds=5)
    for _ in range(settings.login_max_failures_per_account):
        db.add(LoginAttempt(username=staff.username, address=ADDRESS, succeeded=False, at=old))
    await db.flush()
    assert (await _login(client, staff.username, "correct horse")).status_code == 200


async def test_address_is_locked_after_many_failures(
    app_and_client: tuple[Any, httpx.AsyncClient], db: AsyncSession, settings: Settings
) -> None:
    app, client = app_and_client
    staff = await factories.create_person(db, password="correct horse")
    assert staff.username is not None
    # Spraying one password over many accounts from one address.
    for n in range(settings.login_max_failures_per_address):
        db.add(LoginAttempt(username=f"spray{n}", address=ADDRESS, succeeded=False))
    await db.flush()
    response = await _login(client, staff.username, "correct horse")
    assert_problem(response, 429, "auth.too_many_attempts")
    assert await _attempts(db, staff.username) == []
    assert await _sessions(db, staff) == []

    # Another address is not affected.
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as elsewhere:
        assert (await _login(elsewhere, staff.username, "correct horse")).status_code == 200
    assert await _attempts(db, staff.username) == [("192.0.2.7", True)]


async def test_login_payload_is_validated(client: httpx.AsyncClient, db: AsyncSession) -> None:
    for body in ({"username": "", "password": "x"}, {"username": "a"}, {"password": "x"}):
        assert_problem(
            await client.post(f"{API}/auth/password/login", json=body), 422, "request.invalid"
        )
    assert await _attempts(db, "a") == []
