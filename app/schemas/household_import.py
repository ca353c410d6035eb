from enum import StrEnum
from typing import Annotated, Literal

from fastapi import File, UploadFile
from pydantic import BaseModel

# Declared here rather than in the router so the upload's shape lives with the report's.
ImportFile = Annotated[
    UploadFile,
    File(description="CSV (UTF-8 or GB18030) or XLSX; one row per household member"),
]


class RowErrorCode(StrEnum):
    REQUIRED = "required"
    TOO_LONG = "too_long"
    INVALID_BOOLEAN = "invalid_boolean"
    INVALID_PARTICIPATION = "invalid_participation"
    INVALID_PHONE = "invalid_phone"
    UNKNOWN_GROUP = "unknown_group"
    NUMBER_TAKEN = "number_taken"
    INCONSISTENT_HOUSEHOLD = "inconsistent_household"
    NO_HEAD = "no_head"
    MULTIPLE_HEADS = "multiple_heads"
    DUPLICATE_PERSON = "duplicate_person"
    PERSON_IN_HOUSEHOLD = "person_in_household"


class ImportRowError(BaseModel):
    """One problem with one row; `line` counts rows as a spreadsheet shows them (header = 1)."""

    line: int
    column: str | None
    code: RowErrorCode
    reason: str


class ImportReport(BaseModel):
    dry_run: bool
    format: Literal["csv", "xlsx"]
    households: int
    members: int
    # Columns the file has but the import does not read, so a misspelt header is noticed.
    ignored_columns: list[str] = []
