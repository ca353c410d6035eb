"""Logs as one JSON object a line, carrying the request's id, with credentials removed."""

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

ACCESS_LOGGER = "village_points.access"

# The JSON line shows none of these (JsonFormatter leaves out a record's standard fields), and
# looking them up cost every record, the access line of every request among them, a few percent
# of a cheap read.
logging.logThreads = False
logging.logProcesses = False
logging.logMultiprocessing = False

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Whatever carries a credential: query strings and bodies a library may log, headers.
_SECRETS = re.compile(
    r"(?i)((?:secret|js_code|token|session_key|password|ticket)"
    r"[\"']?\s*[=:]\s*[\"']?)[^&\"'\s,}]+"
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str) -> str:
    return _BEARER.sub(r"\1[REDACTED]", _SECRETS.sub(r"\1[REDACTED]", text))


# uvicorn adds a copy of its message with terminal colours.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, secrets removed from the message and every field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        line = json.dumps(entry, ensure_ascii=False, default=str)
        # The access line of every request holds only what RequestTelemetry puts there (method,
        # route template, status, ids, duration): nothing a secret could hide in, and scanning
        # it cost a few percent of a cheap request.
        return line if record.name == ACCESS_LOGGER else redact(line)


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """For logging.config.dictConfig and uvicorn's log_config: JSON on stderr; uvicorn's own
    access line replaced by ours; httpx and httpcore, which log whole URLs (code2Session's
    carries the app secret and the login code), held at WARNING."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }
