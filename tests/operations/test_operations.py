"""The operator's commands, run as an operator runs them (the console script in a process of its
own) against databases of their own: the first admin, backup, restore and verify."""

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import col

from app.db import create_engine, create_sessionmaker
from app.models import AuditEntry, HouseholdBalance, LedgerEntry, Person, Role, RoleGrant
from app.operations.admin import password_weakness
from tests import factories as f
from tests.conftest import database_of_its_own
from tests.ledger.conftest import post_entry

STRONG = "Harbour-Lantern-42"


def run(url: str, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "ENVIRONMENT": "dev"}
    env.pop("ADMIN_PASSWORD", None)
    if password is not None:
        env["ADMIN_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


@pytest.fixture(scope="module")
async def source(database_url: str) -> AsyncIterator[tuple[str, AsyncEngine]]:
    async with database_of_its_own(database_url, "vp_ops") as url:
        engine = create_engine(url, pool_size=2)
        try:
            yield url, engine
        finally:
            await engine.dispose()


async def count(engine: AsyncEngine, statement: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(statement)).scalar_one())  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "password",
    [
        "demo1234",
        "Short-1a",
        "password123!",
        "xx-Chief-2026-xx",
        "aaaaaaaaaaaaaaaaaa1A",
        "lowercase-only-words",
    ],
)
def test_weak_admin_passwords_are_named(password: str) -> None:
    assert password_weakness("chief", password) is not None


def test_a_strong_admin_password_passes() -> None:
    assert password_weakness("chief", STRONG) is None


async def test_create_admin_refuses_weak_passwords_and_twice_and_logs_in(
    source: tuple[str, AsyncEngine], app: FastAPI, asgi_client: httpx.AsyncClient
) -> None:
    url, engine = source
    people = select(func.count()).select_from(Person).where(col(Person.username) == "chief")

    refused = run(url, "create-admin", "chief", password="demo1234")
    assert refused.returncode != 0
    assert "refused: the password must be at least 12 characters" in refused.stderr
    no_terminal = run(url, "create-admin", "chief")
    assert no_terminal.returncode != 0
    assert "ADMIN_PASSWORD" in no_terminal.stderr
    assert await count(engine, people) == 0

    created = run(url, "create-admin", "chief", "--name", "区管理员", password=STRONG)
    assert created.returncode == 0, created.stderr
    again = run(url, "create-admin", "chief", password=STRONG + "x")
    assert again.returncode != 0
    assert "already exists" in again.stderr
    assert await count(engine, people) == 1

    async with engine.connect() as conn:
        person = (await conn.execute(select(Person).where(col(Person.username) == "chief"))).one()
        grants = (
            await conn.execute(select(RoleGrant).where(col(RoleGrant.person_id) == person.id))
        ).all()
        actions = set(
            (
                await conn.execute(
                    select(col(AuditEntry.action)).where(
                        col(AuditEntry.object_id).in_([person.id, *(g.id for g in grants)])
                    )
                )
            ).scalars()
        )
    assert [(g.role, g.town_id, g.village_id) for g in grants] == [
        (Role.DISTRICT_ADMIN, None, None)
    ]
    assert actions == {"person.create_admin", "role_grant.create"}

    app.state.sessionmaker = create_sessionmaker(engine)
    try:
        wrong = await asgi_client.post(
            "/api/v1/auth/password/login", json={"username": "chief", "password": STRONG + "x"}
        )
        login = await asgi_client.post(
            "/api/v1/auth/password/login", json={"username": "chief", "password": STRONG}
        )
        assert login.status_code == 200, login.text
        me = await asgi_client.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
        )
    finally:
        del app.state.sessionmaker
    assert wrong.status_code == 401
    assert me.status_code == 200
    assert me.json()["person"]["username"] == "chief"
    assert [g["role"] for g in me.json()["grants"]] == ["district_admin"]


@pytest.fixture
async def empty_database(database_url: str) -> AsyncIterator[str]:
    name = f"vp_restore_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_a_restored_backup_verifies_and_verify_catches_tampering(
    source: tuple[str, AsyncEngine], empty_database: str, tmp_path: Path
) -> None:
    url, engine = source
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        villages = [await f.create_village(session) for _ in range(2)]
        homes = [await f.create_household(session, v) for v in villages for _ in range(2)]
        for home in homes:
            await post_entry(session, home, 30)
            await post_entry(session, home, -5)
    assert run(url, "verify").returncode == 0

    dump = tmp_path / "village-points.dump"
    backed_up = run(url, "backup", str(dump))
    assert backed_up.returncode == 0, backed_up.stderr
    assert dump.stat().st_size > 0
    assert not list(tmp_path.glob("*.partial"))

    restored = run(empty_database, "restore", str(dump))
    assert restored.returncode == 0, restored.stderr
    assert "verify ok" in restored.stdout
    target = create_engine(empty_database, pool_size=1)
    try:
        entries = select(func.count()).select_from(LedgerEntry)
        assert await count(target, entries) == await count(engine, entries) >= 8
        balances = select(func.sum(HouseholdBalance.balance))
        assert await count(target, balances) == await count(engine, balances)

        # Into a database with tables, a restore refuses and changes nothing.
        twice = run(empty_database, "restore", str(dump))
        assert twice.returncode != 0
        assert "already has tables" in twice.stderr
        assert await count(target, entries) == await count(engine, entries)

        # Tampered behind the application's back (the append-only trigger switched off, as
        # only a superuser can): verify names the village and fails.
        async with target.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(
                text("UPDATE ledger_entry SET points = 99 WHERE village_id = :v AND seq = 1"),
                {"v": villages[0].id},
            )
        tampered = run(empty_database, "verify")
        assert tampered.returncode != 0
        assert f"village {villages[0].id}: hash chain broken at entry 1" in tampered.stderr
        assert "balance" in tampered.stderr
        assert f"village {villages[1].id}" not in tampered.stderr
    finally:
        await target.dispose()


def test_restore_of_a_missing_file_fails(tmp_path: Path) -> None:
    missing = run("postgresql://nobody@127.0.0.1:1/none", "restore", str(tmp_path / "no.dump"))
    assert missing.returncode != 0
    assert "no backup file" in missing.stderr
