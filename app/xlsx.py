"""What every XLSX export shares: the media type, text kept as text, and a download name."""

import re
from collections.abc import Sequence
from urllib.parse import quote

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font
from openpyxl.worksheet.worksheet import Worksheet

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


def title_and_header(sheet: Worksheet, title: str, header: Sequence[str]) -> None:
    """The form's first two rows, as the seeds print them: its title across the width, bold
    and centred, then the column headings in bold."""
    sheet.append([safe(title)])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(header))
    sheet["A1"].font = Font(bold=True, size=14)
    sheet["A1"].alignment = Alignment(horizontal="center")
    sheet.append(list(header))
    for cell in sheet[2]:
        cell.font = Font(bold=True)
