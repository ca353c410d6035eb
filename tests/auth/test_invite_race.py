"""Races with real commits: single-use invite codes, refresh tokens, first logins, guesses."""

import asyncio
import uuid

from sqlalchemy import func, insert, select
from sqlmodel import col

from app.integrations.fake_wechat import session_key_for
from app.models import (
    InviteCode,
    LoginAttempt,
    LoginMethod,
    LoginSession,
    RefreshToken,
    WechatIdentity,
)
from app.security import token_digest
from app.services.auth import start_login
from tests import factories
from tests.auth.conftest import (
    API,
    Committed,
    assert_problem,
    bearer,
    bind_ticket_for,
    issue_invite,
    wait_for_lock_waiters,
    wechat_login,
)

RACERS = 20


async def test_one_invite_code_binds_one_phone(committed: Committed) -> None:
    client = committed.client
    v = await committed.villager()
    code = await issue_invite(client, v)
    openids = [f"{committed.tag}-phone{i}" for i in range(RACERS)]
    tickets = await asyncio.gather(*(bind_ticket_for(client, o) for o in openids))

    responses = await asyncio.gather(
        *(
            client.post(f"{API}/auth/wechat/bind", json={"bind_ticket": t, "invite_code": code})
            for t in tickets
        )
    )
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) == 1, [r.text for r in responses]
    for response in responses:
        if response.status_code != 200:
            assert_problem(response, 404, "auth.invite_invalid")

    async with committed.sessionmaker() as session:
        bound = (
            await session.execute(
                select(col(WechatIdentity.openid)).where(
                    col(WechatIdentity.person_id) == v.person.id
                )
            )
        ).all()
        assert len(bound) == 1
        waiting = await session.scalar(
            select(func.count())
            .select_from(WechatIdentity)
            .where(
                col(WechatIdentity.openid).like(f"{committed.tag}-phone%"),
                col(WechatIdentity.person_id).is_(None),
            )
        )
        assert waiting == RACERS - 1
        used_at = await session.scalar(
            select(col(InviteCode.used_at)).where(col(InviteCode.code_hash) == token_digest(code))
        )
        assert used_at is not None
        logins = await session.scalar(
            select(func.count())
            .select_from(LoginSession)
            .where(col(LoginSession.person_id) == v.person.id)
        )
        assert logins == 1
    me = await client.get(f"{API}/me", headers=bearer(winners[0].json()["access_token"]))
    assert me.json()["household"]["id"] == str(v.household.id)


async def test_two_phones_binding_one_person_by_phone_number(committed: Committed) -> None:
    client = committed.client
    phone = "13800001234"
    async with committed.sessionmaker() as session:
        v = await factories.create_village(
            session, await factories.create_town(session, name=f"{committed.tag}镇")
        )
        household = await factories.create_household(session, v)
        person = await factories.create_person(session, v, phone=phone)
        await factories.add_member(session, household, person)
        await session.commit()
    tickets = await asyncio.gather(
        *(bind_ticket_for(client, f"{committed.tag}-dual{i}") for i in range(2))
    )
    responses = await asyncio.gather(
        *(
            client.post(
                f"{API}/auth/wechat/bind", json={"bind_ticket": t, "phone_code": f"phone:{phone}"}
            )
            for t in tickets
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 409] or sorted(
        r.status_code for r in responses
    ) == [200, 404], [r.text for r in responses]
    loser = next(r for r in responses if r.status_code != 200)
    expected = (
        "auth.person_already_bound" if loser.status_code == 409 else "auth.phone_not_registered"
    )
    assert_problem(loser, loser.status_code, expected)
    async with committed.sessionmaker() as session:
        bound = await session.scalar(
            select(func.count())
            .select_from(WechatIdentity)
            .where(col(WechatIdentity.person_id) == person.id)
        )
        assert bound == 1


async def test_first_logins_of_one_openid_at_once(committed: Committed) -> None:
    openid = f"{committed.tag}-double-tap"
    racers = 5
    # An uncommitted row for the openid holds every login at the unique index; rolling it
    # back releases them all at once, so they really race to create the identity.
    async with committed.engine.connect() as blocker:
        transaction = await blocker.begin()
        await blocker.execute(
            insert(WechatIdentity).values(id=uuid.uuid4(), openid=openid, session_key="blocker")
        )
        logins = [
            asyncio.create_task(wechat_login(committed.client, f"{openid}#{i}"))
            for i in range(racers)
        ]
        await wait_for_lock_waiters(committed.engine, racers)
        await transaction.rollback()
        responses = await asyncio.gather(*logins)
    for response in responses:
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "bind_required"
    async with committed.sessionmaker() as session:
        rows = (
            await session.execute(
                select(col(WechatIdentity.person_id), col(WechatIdentity.session_key)).where(
                    col(WechatIdentity.openid) == openid
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [(None, session_key_for(openid))]


async def test_one_refresh_token_refreshes_once(committed: Committed) -> None:
    v = await committed.villager()
    async with committed.sessionmaker() as session:
        tokens = await start_login(session, committed.settings, v.person.id, LoginMethod.WECHAT)
        await session.commit()
    responses = await asyncio.gather(
        *(
            committed.client.post(
                f"{API}/auth/refresh", json={"refresh_token": tokens.refresh_token}
            )
            for _ in range(2)
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 401], [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()
    assert_problem(next(r for r in responses if r.status_code == 401), 401, "auth.refresh_reused")
    # The second use looks like a stolen copy, so the family ends, the winner's tokens too.
    me = await committed.client.get(f"{API}/me", headers=bearer(winner["access_token"]))
    assert_problem(me, 401, "auth.session_revoked")

    async with committed.sessionmaker() as session:
        login = (
            await session.execute(
                select(LoginSession).where(col(LoginSession.person_id) == v.person.id)
            )
        ).scalar_one()
        assert login.revoked_reason == "refresh_reuse"
        assert login.revoked_at is not None
        issued = await session.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .where(col(RefreshToken.session_id) == login.id)
        )
        assert issued == 2  # the original and one rotation, never two


async def test_many_refreshes_with_one_token(committed: Committed) -> None:
    v = await committed.villager()
    async with committed.sessionmaker() as session:
        tokens = await start_login(session, committed.settings, v.person.id, LoginMethod.WECHAT)
        await session.commit()
    responses = await asyncio.gather(
        *(
            committed.client.post(
                f"{API}/auth/refresh", json={"refresh_token": tokens.refresh_token}
            )
            for _ in range(10)
        )
    )
    assert [r.status_code for r in responses].count(200) == 1
    codes = [r.json()["code"] for r in responses if r.status_code != 200]
    assert set(codes) <= {"auth.refresh_reused", "auth.session_revoked"}
    assert "auth.refresh_reused" in codes
    async with committed.sessionmaker() as session:
        issued = await session.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .join(LoginSession, col(LoginSession.id) == col(RefreshToken.session_id))
            .where(col(LoginSession.person_id) == v.person.id)
        )
        assert issued == 2


async def test_parallel_password_guesses_stop_at_the_limit(committed: Committed) -> None:
    username = f"{committed.tag}-staff"
    async with committed.sessionmaker() as session:
        village = await factories.create_village(
            session, await factories.create_town(session, name=f"{committed.tag}镇")
        )
        await factories.create_person(session, village, password="correct horse", username=username)
        await session.commit()
    responses = await asyncio.gather(
        *(
            committed.client.post(
                f"{API}/auth/password/login", json={"username": username, "password": f"guess{i}"}
            )
            for i in range(RACERS)
        )
    )
    limit = committed.settings.login_max_failures_per_account
    statuses = [r.status_code for r in responses]
    assert statuses.count(401) == limit, statuses
    assert statuses.count(429) == RACERS - limit
    for response in responses:
        code = "auth.bad_credentials" if response.status_code == 401 else "auth.too_many_attempts"
        assert_problem(response, response.status_code, code)
    async with committed.sessionmaker() as session:
        rows = (
            await session.execute(
                select(col(LoginAttempt.address), col(LoginAttempt.succeeded)).where(
                    col(LoginAttempt.username) == username
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [(committed.address, False)] * limit
