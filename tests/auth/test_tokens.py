"""Real tokens: what an access token must be, and how refresh tokens rotate and end."""

import asyncio
import base64
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.errors import Unauthorized
from app.models import LoginMethod, LoginSession, Person, RefreshToken, Role, RoleGrant
from app.security import LEEWAY_SECONDS, AccessClaims, AccessTokens, token_digest
from app.services.auth import start_login
from tests import factories
from tests.auth.conftest import (
    API,
    assert_problem,
    bearer,
    bind_ticket_for,
    claims_for,
    forge,
    rsa_key_pair,
    sign_raw,
)


async def _me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(f"{API}/me", headers=bearer(token))


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{API}/auth/refresh", json={"refresh_token": token})


async def _session(db: AsyncSession, session_id: uuid.UUID) -> LoginSession:
    return (
        await db.execute(
            select(LoginSession)
            .where(col(LoginSession.id) == session_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def _refresh_row(db: AsyncSession, token: str) -> RefreshToken:
    return (
        await db.execute(
            select(RefreshToken)
            .where(col(RefreshToken.token_hash) == token_digest(token))
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def _assert_refused(
    client: httpx.AsyncClient, db: AsyncSession, token: str, code: str, session_id: uuid.UUID
) -> None:
    """Refused for reading and for writing, and the refused logout changed nothing."""
    assert_problem(await _me(client, token), 401, code)
    assert_problem(await client.post(f"{API}/auth/logout", headers=bearer(token)), 401, code)
    assert (await _session(db, session_id)).revoked_at is None


async def _logged_in(db: AsyncSession, settings: Settings) -> tuple[Person, uuid.UUID, Any]:
    person = await factories.create_person(db, await factories.create_village(db))
    tokens = await start_login(db, settings, person.id, LoginMethod.PASSWORD)
    session_id = uuid.UUID(
        jwt.decode(tokens.access_token, options={"verify_signature": False})["sid"]
    )
    return person, session_id, tokens


async def test_access_token_is_a_pinned_short_lived_jwt(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    person, session_id, tokens = await _logged_in(db, settings)
    header = jwt.get_unverified_header(tokens.access_token)
    assert header["alg"] == "HS256"
    claims = jwt.decode(
        tokens.access_token,
        settings.jwt_secret,
        algorithms=["HS256"],
        audience=f"{settings.jwt_audience}:access",
        issuer=settings.jwt_issuer,
    )
    assert claims["sub"] == str(person.id)
    assert claims["sid"] == str(session_id)
    assert claims["exp"] - claims["iat"] == settings.access_token_minutes * 60
    # The refresh token is opaque and stored only as a digest.
    row = await _refresh_row(db, tokens.refresh_token)
    assert row.session_id == session_id
    assert tokens.refresh_token not in row.token_hash
    assert (await _me(client, tokens.access_token)).status_code == 200


async def test_forged_token_with_every_claim_right_is_accepted(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    # The control for the refusals below: each of them changes exactly one thing.
    person, session_id, _ = await _logged_in(db, settings)
    token = forge(settings, claims_for(settings, person.id, session_id))
    response = await _me(client, token)
    assert response.status_code == 200
    assert response.json()["person"]["id"] == str(person.id)


async def test_missing_token(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{API}/me"), 401, "auth.token_missing")
    response = await client.get(f"{API}/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_problem(response, 401, "auth.token_missing")


async def test_expired_token(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    person, session_id, _ = await _logged_in(db, settings)
    now = int(time.time())
    claims = claims_for(
        settings, person.id, session_id, iat=now - 1000, nbf=now - 1000, exp=now - 60
    )
    token = forge(settings, claims)
    response = await _me(client, token)
    assert_problem(response, 401, "auth.token_expired")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    await _assert_refused(client, db, token, "auth.token_expired", session_id)


def _tamper(token: str) -> list[str]:
    header, payload, signature = token.split(".")
    # The first character: the last one may carry only padding bits a decoder ignores.
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    padded = payload + "=" * (-len(payload) % 4)
    claims = json.loads(base64.urlsafe_b64decode(padded))
    claims["sub"] = str(uuid.uuid4())
    other = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return [
        f"{header}.{payload}.{flipped}",
        f"{header}.{other}.{signature}",  # someone else's id under the original signature
        f"{header}.{payload}.",
    ]


async def test_tampered_token(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    _, session_id, tokens = await _logged_in(db, settings)
    for token in [*_tamper(tokens.access_token), "garbage", "a.b.c"]:
        await _assert_refused(client, db, token, "auth.token_invalid", session_id)


async def test_alg_none_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    person, session_id, _ = await _logged_in(db, settings)
    claims = claims_for(settings, person.id, session_id)
    for alg in ("none", "None", "NONE"):
        token = sign_raw({"alg": alg, "typ": "JWT"}, claims, None, None)
        await _assert_refused(client, db, token, "auth.token_invalid", session_id)


async def test_rs256_token_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    person, session_id, _ = await _logged_in(db, settings)
    private, _ = rsa_key_pair()
    token = jwt.encode(claims_for(settings, person.id, session_id), private, algorithm="RS256")
    await _assert_refused(client, db, token, "auth.token_invalid", session_id)


async def test_hs256_signed_with_a_public_key_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    # The HS/RS confusion: an attacker signs with a published public key as the HMAC secret.
    person, session_id, _ = await _logged_in(db, settings)
    _, public = rsa_key_pair()
    claims = claims_for(settings, person.id, session_id)
    for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
        token = sign_raw({"alg": alg, "typ": "JWT"}, claims, public, digest)
        await _assert_refused(client, db, token, "auth.token_invalid", session_id)


# PyJWT warns that our 42-byte secret is short for HS384/HS512; these tokens are the attack.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
async def test_other_hmac_algorithm_with_the_right_secret_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, algorithm: str
) -> None:
    person, session_id, _ = await _logged_in(db, settings)
    token = forge(settings, claims_for(settings, person.id, session_id), algorithm=algorithm)
    await _assert_refused(client, db, token, "auth.token_invalid", session_id)


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "village-points-api:bind"},
        {"aud": "village-points-api"},
        {"aud": "someone-else:access"},
        {"aud": None},
        {"iss": "someone-else"},
        {"iss": None},
        {"exp": None},
        {"sub": None},
        {"sid": None},
        {"sid": "not-a-uuid"},
        {"sub": "not-a-uuid"},
        {"nbf": int(time.time()) + 3600},
    ],
    ids=[
        "aud-bind",
        "aud-bare",
        "aud-other",
        "aud-missing",
        "iss-other",
        "iss-missing",
        "exp-missing",
        "sub-missing",
        "sid-missing",
        "sid-bad",
        "sub-bad",
        "not-yet-valid",
    ],
)
async def test_wrong_claims_are_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, overrides: dict[str, Any]
) -> None:
    person, session_id, _ = await _logged_in(db, settings)
    claims = claims_for(settings, person.id, session_id)
    for key, value in overrides.items():
        if value is None:
            claims.pop(key)
        else:
            claims[key] = value
    await _assert_refused(client, db, forge(settings, claims), "auth.token_invalid", session_id)


async def test_bind_ticket_is_not_an_access_token(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    _, session_id, _ = await _logged_in(db, settings)
    ticket = await bind_ticket_for(client, "o-ticket-as-access")
    await _assert_refused(client, db, ticket, "auth.token_invalid", session_id)


async def test_token_of_someone_elses_session_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    # Even signed with our secret, a subject must match the login it names.
    _, session_id, _ = await _logged_in(db, settings)
    intruder = await factories.create_person(db)
    token = forge(settings, claims_for(settings, intruder.id, session_id))
    await _assert_refused(client, db, token, "auth.session_revoked", session_id)
    unknown = forge(settings, claims_for(settings, intruder.id, uuid.uuid4()))
    await _assert_refused(client, db, unknown, "auth.session_revoked", session_id)


async def test_logout_revokes_access_and_refresh(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    person, session_id, tokens = await _logged_in(db, settings)
    _, other_session_id, other = await _logged_in(db, settings)
    response = await client.post(f"{API}/auth/logout", headers=bearer(tokens.access_token))
    assert response.status_code == 204
    session = await _session(db, session_id)
    assert session.revoked_at is not None
    assert session.revoked_reason == "logout"

    assert_problem(await _me(client, tokens.access_token), 401, "auth.session_revoked")
    assert_problem(await _refresh(client, tokens.refresh_token), 401, "auth.session_revoked")
    assert (await _refresh_row(db, tokens.refresh_token)).used_at is None
    assert_problem(
        await client.post(f"{API}/auth/logout", headers=bearer(tokens.access_token)),
        401,
        "auth.session_revoked",
    )
    # Other logins are untouched.
    assert (await _session(db, other_session_id)).revoked_at is None
    assert (await _me(client, other.access_token)).status_code == 200


async def test_refresh_rotates(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    person, session_id, tokens = await _logged_in(db, settings)
    response = await _refresh(client, tokens.refresh_token)
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["refresh_token"] != tokens.refresh_token
    assert (await _refresh_row(db, tokens.refresh_token)).used_at is not None
    new_row = await _refresh_row(db, rotated["refresh_token"])
    assert new_row.session_id == session_id
    assert new_row.used_at is None
    me = await _me(client, rotated["access_token"])
    assert me.status_code == 200
    assert me.json()["person"]["id"] == str(person.id)
    # The old access token stays valid until it expires: it is short-lived by design.
    assert (await _me(client, tokens.access_token)).status_code == 200

    again = await _refresh(client, rotated["refresh_token"])
    assert again.status_code == 200
    assert (await _session(db, session_id)).revoked_at is None


async def test_refresh_token_reuse_revokes_the_family(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    _, session_id, tokens = await _logged_in(db, settings)
    first = await _refresh(client, tokens.refresh_token)
    assert first.status_code == 200
    second = await _refresh(client, first.json()["refresh_token"])
    assert second.status_code == 200
    latest = second.json()

    # The first token comes back (a stolen copy, say): the whole login ends.
    response = await _refresh(client, tokens.refresh_token)
    assert_problem(response, 401, "auth.refresh_reused")
    session = await _session(db, session_id)
    assert session.revoked_at is not None
    assert session.revoked_reason == "refresh_reuse"
    # The revocation was committed although the request failed.
    assert_problem(await _refresh(client, latest["refresh_token"]), 401, "auth.session_revoked")
    assert (await _refresh_row(db, latest["refresh_token"])).used_at is None
    assert_problem(await _me(client, latest["access_token"]), 401, "auth.session_revoked")
    assert_problem(await _me(client, tokens.access_token), 401, "auth.session_revoked")
    assert_problem(await _refresh(client, tokens.refresh_token), 401, "auth.session_revoked")


async def test_unknown_and_expired_refresh_tokens(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    _, session_id, tokens = await _logged_in(db, settings)
    assert_problem(await _refresh(client, "not-a-refresh-token"), 401, "auth.refresh_invalid")
    # An access token is not a refresh token either.
    assert_problem(await _refresh(client, tokens.access_token[:200]), 401, "auth.refresh_invalid")

    row = await _refresh_row(db, tokens.refresh_token)
    row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    await db.flush()
    assert_problem(await _refresh(client, tokens.refresh_token), 401, "auth.refresh_expired")
    assert (await _refresh_row(db, tokens.refresh_token)).used_at is None
    assert (await _session(db, session_id)).revoked_at is None


async def test_role_changes_apply_to_the_next_request(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    village = await factories.create_village(db)
    person = await factories.create_person(db, village)
    headers = await factories.login_headers(db, settings, person)
    persons = f"{API}/persons?village_id={village.id}"

    assert_problem(await client.get(persons, headers=headers), 403, "auth.forbidden")

    grant = await factories.grant(db, person, Role.VILLAGE_ADMIN, village=village)
    response = await client.get(persons, headers=headers)
    assert response.status_code == 200, response.text
    me = await client.get(f"{API}/me", headers=headers)
    assert [g["role"] for g in me.json()["grants"]] == ["village_admin"]

    grant.revoked_at = datetime.now(UTC)
    await db.flush()
    assert_problem(await client.get(persons, headers=headers), 403, "auth.forbidden")
    assert (await client.get(f"{API}/me", headers=headers)).json()["grants"] == []
    assert (
        await db.scalar(select(col(RoleGrant.revoked_at)).where(col(RoleGrant.id) == grant.id))
    ) is not None


async def test_refresh_payload_is_validated(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post(f"{API}/auth/refresh", json={}), 422, "request.invalid")
    assert_problem(
        await client.post(f"{API}/auth/refresh", json={"refresh_token": ""}), 422, "request.invalid"
    )


async def test_a_verified_token_is_remembered_only_until_it_expires(settings: Settings) -> None:
    """Requests after the first skip the signature check (AccessTokens), but never past the
    token's expiry: the token is refused then as PyJWT refuses it."""
    tokens = AccessTokens(settings)
    person_id, session_id = uuid.uuid4(), uuid.uuid4()
    # Expired a moment ago, still within the leeway allowed for clocks that disagree.
    expires = int(time.time()) - LEEWAY_SECONDS + 1
    token = forge(settings, claims_for(settings, person_id, session_id, exp=expires))
    assert tokens.verify(token) == AccessClaims(person_id, session_id, float(expires))
    assert tokens.verify(token).session_id == session_id

    await asyncio.sleep(1.2)
    with pytest.raises(Unauthorized) as refused:
        tokens.verify(token)
    assert refused.value.code == "auth.token_expired"
