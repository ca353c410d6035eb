import json
from pathlib import Path

from app.config import Settings
from app.main import create_app

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_openapi_matches_the_code() -> None:
    """The phone front end builds against openapi/openapi.json; it must say what the code does.

    Regenerate with `village-points openapi > openapi/openapi.json`.
    """
    generated = create_app(Settings(environment="test")).openapi()
    assert json.loads(COMMITTED.read_text(encoding="utf-8")) == generated


def test_every_operation_has_a_stable_id_and_problem_responses() -> None:
    spec = create_app(Settings(environment="test")).openapi()
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
