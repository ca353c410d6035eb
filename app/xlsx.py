"""What every XLSX export shares: the media type, text kept as text, and a download name."""

import re
from urllib.parse import quote

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMULA_STARTS = ("=", "+", "-", "@")
_NOT_ASCII_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe(value: object) -> object:
    """Text as text: no characters a workbook can't hold, nothing Excel would run as a formula."""
    if not isinstance(value, str):
        return value
    text: str = ILLEGAL_CHARACTERS_RE.sub("", value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def attachment(filename: str) -> str:
    """A Content-Disposition value: an ASCII-only `filename` (anything else becomes `_`) and
    the exact name, percent-encoded, in `filename*` (RFC 6266) for clients that read it."""
    fallback = _NOT_ASCII_SAFE.sub("_", filename).strip("_.") or "download"
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
