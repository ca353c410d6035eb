"""The first district admin of a fresh installation, without the demo's published accounts."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.models import Person, Role, RoleGrant
from app.security import hash_password
from app.services import audit

MIN_PASSWORD_LENGTH = 12
# The demo's published password and what any guesser tries first, anywhere in the password.
KNOWN_FRAGMENTS = ("demo1234", "password", "123456", "qwerty", "admin", "village")


class OperationError(Exception):
    """Refused: the message is for the operator, the command exits non-zero."""


def password_weakness(username: str, password: str) -> str | None:
    """Why the password is too weak for a district admin, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password must be at least {MIN_PASSWORD_LENGTH} characters"
    lowered = password.lower()
    if username.lower() in lowered or any(known in lowered for known in KNOWN_FRAGMENTS):
        return "the password is a well-known one or contains the username"
    kinds = sum(
        any(test(c) for c in password)
        for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    if kinds < 3 or len(set(password)) < 6:
        return (
            "the password must mix at least three of: lower case, upper case, digits, symbols"
            " (and not repeat a few characters)"
        )
    return None


async def create_district_admin(
    session: AsyncSession, username: str, password: str, name: str
) -> Person:
    """A person with a password login and the district admin role, audited as done by no one
    (the operator at the console). Refused for a weak password or a username already taken."""
    weakness = password_weakness(username, password)
    if weakness:
        raise OperationError(weakness)
    taken = await session.execute(select(col(Person.id)).where(col(Person.username) == username))
    if taken.first() is not None:
        raise OperationError(f"the username {username!r} already exists; nothing was changed")
    person = Person(name=name, username=username, password_hash=hash_password(password))
    session.add(person)
    await session.flush()
    grant = RoleGrant(person_id=person.id, role=Role.DISTRICT_ADMIN)
    session.add(grant)
    await session.flush()
    audit.record(
        session, None, "person.create_admin", "person", person.id, after=audit.snapshot(person)
    )
    audit.record(
        session, None, "role_grant.create", "role_grant", grant.id, after=audit.snapshot(grant)
    )
    return person
