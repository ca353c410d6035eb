"""Pieces of SQL for hot reads whose JSON PostgreSQL builds and the app passes through: each
writes a value exactly as the response model's pydantic serialisation would.

Objects are written by row_to_json over a row whose columns are named and ordered as the
model's fields, and lists by string_agg of those: compact, keys in the model's order, so a body
is byte for byte what pydantic would have written (json_build_object and json_agg add spaces
and line breaks)."""


def json_time(column: str) -> str:
    """A timestamptz as pydantic writes a datetime: UTC as Z, the fraction only where there
    is one. Null stays null."""
    return (
        f"(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        f" || CASE WHEN date_part('microseconds', {column})::integer % 1000000 = 0 THEN ''"
        f" ELSE to_char({column} AT TIME ZONE 'UTC', '.US') END || 'Z')"
    )
