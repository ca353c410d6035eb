"""The OpenAPI document is the contract: schemathesis sends generated requests (valid and
invalid) to every operation, in-process, as an anonymous caller, a villager, a scorer, a shop
attendant and a district admin, and fails on any 5xx, any status the operation does not
declare, and any body or content type that does not match the declared schema.

The requests commit, so they run against a database of this module's own. Bounded for the
suite's sake: a few valid and a few invalid examples per operation, no shrinking.
"""

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.main import create_app
from app.models import Role
from tests import factories as f
from tests.conftest import database_of_its_own

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES_PER_OPERATION = int(os.environ.get("CONTRACT_EXAMPLES", "3"))


@dataclass
class Callers:
    app: FastAPI
    headers: dict[str, dict[str, str]]
    parameters: dict[str, str]


@pytest.fixture(scope="module")
async def callers(database_url: str, settings: Settings) -> AsyncIterator[Callers]:
    async with database_of_its_own(database_url, "vp_contract") as url:
        engine = create_engine(url, pool_size=1)
        try:
            async with create_sessionmaker(engine)() as db, db.begin():
                village = await f.create_village(db)
                household = await f.create_household(db, village)
                villager = await f.create_person(db, village)
                await f.add_member(db, household, villager, is_head=True)
                scorer = await f.create_person(db, village)
                await f.grant(db, scorer, Role.SCORER, village=village)
                attendant = await f.create_person(db, village)
                await f.grant(db, attendant, Role.SHOP_ATTENDANT, village=village)
                admin = await f.create_person(db)
                await f.grant(db, admin, Role.DISTRICT_ADMIN)
                headers = {"anonymous": {}}
                for name, person in (
                    ("villager", villager),
                    ("scorer", scorer),
                    ("attendant", attendant),
                    ("admin", admin),
                ):
                    headers[name] = await f.login_headers(db, settings, person)
                parameters = {
                    "path.town_id": str(village.town_id),
                    "path.village_id": str(village.id),
                    "path.household_id": str(household.id),
                    "path.person_id": str(villager.id),
                }
        finally:
            await engine.dispose()
        # The app's lifespan opens its engine on schemathesis' own event loop, where every
        # request then runs.
        app = create_app(
            settings.model_copy(update={"notify_worker_in_app": False}), database_url=url
        )
        yield Callers(app, headers, parameters)


@pytest.fixture(scope="module")
def api_schema(callers: Callers) -> schemathesis.BaseSchema:
    config = SchemathesisConfig.from_dict({"parameters": callers.parameters})
    return schemathesis.openapi.from_asgi("/openapi.json", callers.app, config=config)


def check_operation(operation: Any, mode: GenerationMode, callers: Callers) -> None:
    # Invalid requests mostly stop at validation, the same for everyone: the admin, who gets
    # furthest into the handlers, sends them.
    senders = {
        caller: headers
        for caller, headers in callers.headers.items()
        if mode is GenerationMode.POSITIVE or caller == "admin"
    }

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def keeps_its_contract(case: schemathesis.Case) -> None:
        for caller, headers in senders.items():
            try:
                case.call_and_validate(headers=headers, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as exc:
                exc.add_note(f"as {caller}")
                raise

    keeps_its_contract()


def test_every_operation_keeps_its_contract(
    api_schema: schemathesis.BaseSchema, callers: Callers
) -> None:
    # Hypothesis driven directly: schemathesis' pytest plugin does not run on this pytest.
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                check_operation(operation, mode, callers)
            except Unsatisfiable:
                # Nothing to make invalid: the operation takes no parameters and no body.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:
                notes = "\n".join(getattr(exc, "__notes__", []))
                failures.append(f"{operation.label} ({mode}): {exc}\n{notes}")
    assert not failures, "\n\n".join(failures)
