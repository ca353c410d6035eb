import json
from pathlib import Path

from fastapi import FastAPI

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_openapi_matches_the_code(app: FastAPI) -> None:
    """The phone front end builds against openapi/openapi.json; it must say what the code does.

    Regenerate with `village-points openapi > openapi/openapi.json`.
    """
    generated = app.openapi()
    assert json.loads(COMMITTED.read_text(encoding="utf-8")) == generated


def test_every_operation_has_a_stable_id_and_problem_responses(app: FastAPI) -> None:
    spec = app.openapi()
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert all("__" not in op_id for op_id in ids), "an operation fell back to a generated id"
    for path, operations in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for operation in operations.values():
            for status in ("401", "422"):
                content = operation["responses"][status]["content"]
                assert list(content) == ["application/problem+json"], (path, status)
