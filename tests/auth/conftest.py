"""Helpers for the login and token tests, and an app whose requests really commit.

Most tests use the shared `client`, whose requests commit into savepoints of a transaction
rolled back after the test. Races need real commits on separate connections: `committed`
builds an app on the real engine and deletes afterwards exactly the rows its test made, found
through a tag every town, openid, username and client address of that test carries. Other
tests' data never becomes visible to it (it lives in their own uncommitted transactions), so
nothing else is touched.
"""

import asyncio
import base64
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import create_sessionmaker
from app.integrations.fake_wechat import FakeWechatServer
from app.main import create_app
from app.models import Household, HouseholdMember, Person, Role, Village
from tests import factories

API = "/api/v1"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem with the stable code and a title a phone can show in Chinese."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert any("\u4e00" <= ch <= "\u9fff" for ch in body["title"]), body["title"]
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer "), response.headers
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_for(
    settings: Settings, person_id: uuid.UUID, session_id: uuid.UUID, **overrides: Any
) -> dict[str, Any]:
    """The claims of a valid access token; an override of None drops the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": f"{settings.jwt_audience}:access",
        "sub": str(person_id),
        "sid": str(session_id),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        **overrides,
    }
    return {k: v for k, v in claims.items() if v is not None}


def sign_raw(header: dict[str, Any], claims: dict[str, Any], key: bytes | None, digest: Any) -> str:
    """Sign by hand, for tokens PyJWT refuses to make (alg none, a PEM as HMAC secret)."""
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), digest).digest()
    return signing_input + "." + b64url(signature)


def forge(settings: Settings, claims: dict[str, Any], *, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, settings.jwt_secret, algorithm=algorithm)


@dataclass
class Villager:
    """A household member not yet bound to WeChat, and the admin of their village."""

    village: Village
    household: Household
    member: HouseholdMember
    person: Person
    admin: Person
    admin_headers: dict[str, str]


async def make_villager(
    db: AsyncSession, settings: Settings, *, town_name: str | None = None, **person: Any
) -> Villager:
    town = await factories.create_town(db, **({"name": town_name} if town_name else {}))
    village = await factories.create_village(db, town)
    household = await factories.create_household(db, village)
    villager = await factories.create_person(db, village, **person)
    member = await factories.add_member(db, household, villager, is_head=True)
    admin = await factories.create_person(db, village)
    await factories.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    headers = await factories.login_headers(db, settings, admin)
    return Villager(village, household, member, villager, admin, headers)


async def issue_invite(client: httpx.AsyncClient, villager: Villager) -> str:
    response = await client.post(
        f"{API}/household-members/{villager.member.id}/invite", headers=villager.admin_headers
    )
    assert response.status_code == 201, response.text
    code: str = response.json()["code"]
    return code


async def wechat_login(client: httpx.AsyncClient, code: str) -> httpx.Response:
    return await client.post(f"{API}/auth/wechat/login", json={"code": code})


async def bind_ticket_for(client: httpx.AsyncClient, openid: str) -> str:
    # The fake server accepts each code once per test session unless the test resets it.
    response = await wechat_login(client, f"{openid}#{uuid.uuid4().hex}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "bind_required"
    ticket: str = body["bind_ticket"]
    return ticket


@dataclass
class Committed:
    client: httpx.AsyncClient
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings
    wechat: FakeWechatServer
    # Prefix of every town name, openid, username and client address the test creates.
    tag: str
    address: str

    async def villager(self) -> Villager:
        async with self.sessionmaker() as session:
            villager = await make_villager(session, self.settings, town_name=f"{self.tag}镇")
            await session.commit()
        return villager


async def wait_for_lock_waiters(engine: AsyncEngine, count: int, timeout: float = 30) -> None:
    """Until `count` other backends of this database are waiting for a lock."""
    # Generous: on a loaded machine fifty requests can take seconds to reach their lock.
    deadline = time.monotonic() + timeout
    async with engine.connect() as conn:
        while True:
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            # pg_stat_activity keeps its list of backends for the rest of the transaction (only
            # their wait events are read live): without ending it, racers that connect after the
            # first look would never be counted.
            await conn.rollback()
            if waiting is not None and waiting >= count:
                return
            if time.monotonic() >= deadline:
                others = await conn.execute(
                    text(
                        "SELECT state, wait_event_type, wait_event, left(query, 80), count(*)"
                        " FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid() GROUP BY 1, 2, 3, 4"
                    )
                )
                raise AssertionError(f"only {waiting} of {count} are waiting: {others.all()}")
            await asyncio.sleep(0.02)


@pytest.fixture
async def committed(
    engine: AsyncEngine, settings: Settings, wechat: FakeWechatServer
) -> AsyncIterator[Committed]:
    app = create_app(settings)
    app.state.sessionmaker = create_sessionmaker(engine)
    tag = f"t{uuid.uuid4().hex[:10]}"
    address = f"{tag}-client"
    try:
        async with httpx.AsyncClient(timeout=settings.wechat_timeout_seconds) as http:
            app.state.http = http
            transport = httpx.ASGITransport(
                app=app, raise_app_exceptions=False, client=(address, 50000)
            )
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield Committed(
                    client, engine, app.state.sessionmaker, settings, wechat, tag, address
                )
    finally:
        await _delete_tagged(engine, tag)


async def _delete_tagged(engine: AsyncEngine, tag: str) -> None:
    like = {"p": f"{tag}%"}
    async with engine.begin() as conn:
        towns = list(
            (await conn.execute(text("SELECT id FROM town WHERE name LIKE :p"), like)).scalars()
        )
        villages = list(
            (
                await conn.execute(
                    text("SELECT id FROM village WHERE town_id = ANY(:ids)"), {"ids": towns}
                )
            ).scalars()
        )
        persons = list(
            (
                await conn.execute(
                    text("SELECT id FROM person WHERE village_id = ANY(:ids)"), {"ids": villages}
                )
            ).scalars()
        )
        ids = {"towns": towns, "villages": villages, "persons": persons, **like}
        for statement in (
            "DELETE FROM refresh_token WHERE session_id IN"
            " (SELECT id FROM login_session WHERE person_id = ANY(:persons))",
            "DELETE FROM login_session WHERE person_id = ANY(:persons)",
            "DELETE FROM wechat_identity WHERE openid LIKE :p OR person_id = ANY(:persons)",
            "DELETE FROM invite_code WHERE village_id = ANY(:villages)",
            "DELETE FROM audit_entry WHERE village_id = ANY(:villages)"
            " OR town_id = ANY(:towns) OR actor_id = ANY(:persons)",
            "DELETE FROM role_grant WHERE person_id = ANY(:persons)",
            "DELETE FROM household_member WHERE village_id = ANY(:villages)",
            "DELETE FROM household WHERE village_id = ANY(:villages)",
            "DELETE FROM village_group WHERE village_id = ANY(:villages)",
            "DELETE FROM person WHERE id = ANY(:persons)",
            "DELETE FROM village WHERE id = ANY(:villages)",
            "DELETE FROM town WHERE id = ANY(:towns)",
            "DELETE FROM login_attempt WHERE username LIKE :p OR address LIKE :p",
        ):
            params = {k: v for k, v in ids.items() if f":{k}" in statement}
            await conn.execute(text(statement), params)


def rsa_key_pair() -> tuple[bytes, bytes]:
    """A fresh RSA key: (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public
