"""Scope as SQL: every service narrows its statements through these, so an object outside the
caller's scope is simply not found."""

import uuid
from typing import Any

from sqlalchemy import Boolean, ColumnElement, any_, false, or_, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.driver import param
from app.errors import Forbidden
from app.models import Household, HouseholdMember, Role, RoleGrant, Village
from app.security import Principal

STAFF_READ_ROLES = (Role.VILLAGE_ADMIN, Role.SCORING_LEADER, Role.SCORER, Role.SHOP_ATTENDANT)


def villages_in_towns(town_ids: set[uuid.UUID]) -> Any:
    return select(col(Village.id)).where(col(Village.town_id).in_(town_ids))


def village_sets(
    principal: Principal, roles: tuple[Role, ...], towns: bool, residents: bool
) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """The villages, and the towns of whole villages, a principal who is not the district's
    admin may act on with one of `roles` (village_scope)."""
    village_ids = principal.village_ids(*roles)
    if residents and principal.household_village_id:
        village_ids.add(principal.household_village_id)
    return village_ids, principal.supervised_town_ids() if towns else set()


def village_scope(
    principal: Principal,
    village_column: Any,
    *,
    roles: tuple[Role, ...],
    towns: bool = True,
    residents: bool = False,
) -> ColumnElement[bool]:
    """Rows whose village the principal may act on with one of `roles`.

    `towns`: a town supervisor sees every village of their town. `residents`: a villager sees
    their own village.
    """
    if principal.is_district_admin:
        return true()
    clauses: list[ColumnElement[bool]] = []
    village_ids, town_ids = village_sets(principal, roles, towns, residents)
    if village_ids:
        clauses.append(village_column.in_(village_ids))
    if town_ids:
        clauses.append(village_column.in_(villages_in_towns(town_ids)))
    return or_(*clauses) if clauses else false()


# village_scope for a statement built once (app.driver) and given the principal at each
# execution: the clause takes the principal's sets as parameters, scope_values gives them.
SCOPE_DISTRICT = param("scope_district", Boolean())
SCOPE_VILLAGES = param("scope_villages", ARRAY(PG_UUID(as_uuid=True)))
SCOPE_TOWNS = param("scope_towns", ARRAY(PG_UUID(as_uuid=True)))
SCOPE_PARAMETERS = ("scope_district", "scope_villages", "scope_towns")


def scope_values(
    principal: Principal, *, roles: tuple[Role, ...], towns: bool = True, residents: bool = False
) -> dict[str, Any]:
    """The values of SCOPE_PARAMETERS for village_scope's arguments."""
    if principal.is_district_admin:
        return {"scope_district": True, "scope_villages": [], "scope_towns": []}
    village_ids, town_ids = village_sets(principal, roles, towns, residents)
    return {
        "scope_district": False,
        "scope_villages": list(village_ids),
        "scope_towns": list(town_ids),
    }


def village_scope_parameters(village_column: Any, town_column: Any) -> ColumnElement[bool]:
    """village_scope on parameters: the row's village, and the town it lies in."""
    return or_(
        SCOPE_DISTRICT, village_column == any_(SCOPE_VILLAGES), town_column == any_(SCOPE_TOWNS)
    )


def household_scope(principal: Principal, *, admin_only: bool = False) -> ColumnElement[bool]:
    """Households the principal may read (or, with admin_only, edit).

    Scorers limited to some village groups (包片) see only those groups; everyone sees their own
    household.
    """
    if principal.is_district_admin:
        return true()
    if admin_only:
        return village_scope(
            principal, col(Household.village_id), roles=(Role.VILLAGE_ADMIN,), towns=False
        )
    clauses: list[ColumnElement[bool]] = [
        village_scope(principal, col(Household.village_id), roles=(Role.VILLAGE_ADMIN,)),
        scorer_household_scope(principal),
    ]
    if principal.household_id:
        clauses.append(col(Household.id) == principal.household_id)
    return or_(*clauses)


def scorer_household_scope(principal: Principal) -> ColumnElement[bool]:
    """Households the principal inspects and whose claims they review, as scorer or leader:
    their village, or only their village groups (包片) where the grant names some. Other roles
    the same person holds widen what they may read, never what they may judge."""
    if principal.is_district_admin:
        return true()
    villages, groups = scored_villages_and_groups(principal)
    clauses: list[ColumnElement[bool]] = []
    if villages:
        clauses.append(col(Household.village_id).in_(villages))
    if groups:
        clauses.append(col(Household.village_group_id).in_(groups))
    return or_(*clauses) if clauses else false()


def scored_villages_and_groups(principal: Principal) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """The villages a scorer or leader scores whole, and the village groups (包片) of those
    whose grant names some."""
    villages: list[uuid.UUID] = []
    groups: list[uuid.UUID] = []
    for grant in principal.grants:
        if grant.role not in (Role.SCORER, Role.SCORING_LEADER) or grant.village_id is None:
            continue
        if grant.village_group_ids:
            groups.extend(grant.village_group_ids)
        else:
            villages.append(grant.village_id)
    return villages, groups


# The same scopes as SQL text, for the hot reads sent straight to the driver (app/db.py's
# driver_connection): the text is the same whoever calls, their grants are bound as parameters
# (placeholders named by the statement), so the driver prepares each statement once per
# connection and the check stays inside the query.


def village_scope_sql(village: str, *, everyone: str, villages: str, towns: str) -> str:
    """village_scope over the SQL expression `village`: `everyone` the district flag,
    `villages` the granted villages (uuid[]), `towns` the supervised towns (uuid[])."""
    return (
        f"({everyone}::boolean OR {village} = ANY({villages}::uuid[])"
        # Guarded: without towns, the planner's hashed subplan would read every village.
        f" OR (cardinality({towns}::uuid[]) > 0 AND EXISTS (SELECT FROM village sv"
        f" WHERE sv.id = {village} AND sv.town_id = ANY({towns}::uuid[]))))"
    )


def household_scope_sql(household: str, first: int) -> str:
    """household_scope over the household row aliased `household`, its six parameters numbered
    from `first` in the order household_scope_args gives them."""
    everyone, admin, towns, villages, groups, own = (f"${first + i}" for i in range(6))
    scope = village_scope_sql(
        f"{household}.village_id", everyone=everyone, villages=admin, towns=towns
    )
    return (
        f"({scope} OR {household}.id = {own}::uuid"
        f" OR {household}.village_id = ANY({villages}::uuid[])"
        f" OR {household}.village_group_id = ANY({groups}::uuid[]))"
    )


def household_scope_args(principal: Principal) -> tuple[Any, ...]:
    """household_scope_sql's parameters: the district flag, the villages administered, the
    towns supervised, the villages scored whole, the village groups scored (包片), the caller's
    own household."""
    administered, towns = village_sets(
        principal, (Role.VILLAGE_ADMIN,), towns=True, residents=False
    )
    villages, groups = scored_villages_and_groups(principal)
    return (
        principal.is_district_admin,
        list(administered),
        list(towns),
        villages,
        groups,
        principal.household_id,
    )


# What a village admin may hand out in their own village; everything else is the district's.
VILLAGE_GRANTABLE = frozenset({Role.SCORING_LEADER, Role.SCORER, Role.SHOP_ATTENDANT})


async def ensure_may_manage_account(
    session: AsyncSession, principal: Principal, person_id: uuid.UUID
) -> None:
    """Refuse to touch the login of someone holding more than the caller could grant.

    Credentials, phone (used for WeChat phone binding) and invite codes all lead to logging in
    as the person: a village admin must not reach a district admin who happens to live in
    their village that way.
    """
    if principal.is_district_admin:
        return
    grants = (
        await session.execute(
            select(col(RoleGrant.role), col(RoleGrant.village_id)).where(
                col(RoleGrant.person_id) == person_id, col(RoleGrant.revoked_at).is_(None)
            )
        )
    ).all()
    for role, village_id in grants:
        if role not in VILLAGE_GRANTABLE or not principal.is_village_admin_of(village_id):
            raise Forbidden(
                "This person holds roles beyond yours; only the district can change their login.",
                code="person.privileged",
                title="该人员持有更高权限，须由区级管理员处理",
            )


# Objections (异议): the village working group rules first, the town supervisor on escalation.
OBJECTION_HANDLERS = (Role.VILLAGE_ADMIN, Role.SCORING_LEADER)


def objection_village_scope(principal: Principal, village_column: Any) -> ColumnElement[bool]:
    """Villages whose objections the principal rules on as the working group (村工作小组): its
    admins and scoring leaders. The town reads them, but rules only on escalations."""
    return village_scope(principal, village_column, roles=OBJECTION_HANDLERS, towns=False)


def town_scope(principal: Principal, town_column: Any) -> ColumnElement[bool]:
    """Rows of the towns the principal supervises (every town for the district)."""
    if principal.is_district_admin:
        return true()
    towns = principal.supervised_town_ids()
    return town_column.in_(towns) if towns else false()


async def ensure_no_conflict_of_interest(
    session: AsyncSession,
    principal: Principal,
    *,
    household_id: uuid.UUID,
    scorer_ids: set[uuid.UUID],
    colleagues: ColumnElement[bool],
) -> None:
    """Nobody rules on an objection of their own household. Nobody rules on one about a card
    they scored either, where a colleague who did not (`colleagues`: the live grants of the
    same group, the village's working group or the town's supervisors) can rule instead: a
    village whose only handler scored the card is not left without anyone to answer."""
    if principal.household_id == household_id:
        raise Forbidden(
            "Nobody rules on an objection of their own household.",
            code="objection.own_household",
            title="不能处理本户的异议",
        )
    if principal.person_id not in scorer_ids:
        return
    household_members = select(col(HouseholdMember.person_id)).where(
        col(HouseholdMember.household_id) == household_id
    )
    other = await session.execute(
        select(col(RoleGrant.person_id))
        .where(
            colleagues,
            col(RoleGrant.revoked_at).is_(None),
            col(RoleGrant.person_id) != principal.person_id,
            col(RoleGrant.person_id).not_in(list(scorer_ids)),
            col(RoleGrant.person_id).not_in(household_members),
        )
        .limit(1)
    )
    if other.first() is not None:
        raise Forbidden(
            "You scored the disputed card; another member of the group rules on it.",
            code="objection.scored_by_you",
            title="您评的分，请由工作小组其他成员处理该异议",
        )
