"""Conditional GETs for the API's JSON reads: an ETag on every answer, a 304 without a body when
the phone already holds it.

A village's results are some 200 KB and its rules, shop and standing change a few times a
month, read over rural mobile data. The ETag is a digest of the body the route built, so the
304 is decided only after the whole request ran: the caller's login, scope and every check
are those of a 200, and an answer that changed in any way (an amendment, a refund, a stock
movement, a new set of rules) has a new tag. What it saves is the transfer, not the work; the
answers are private to their caller (`Cache-Control: private, no-cache`: kept by the phone,
revalidated every time, never by a shared cache).
"""

import hashlib
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOT_MODIFIED_DESCRIPTION = "Not modified: `If-None-Match` named this answer's `ETag`; no body"
CACHE_CONTROL = b"private, no-cache"
# RFC 9110 §15.4.5: the headers a 304 carries that its 200 would have.
_KEPT_BY_304 = frozenset({b"cache-control", b"etag", b"vary"})


def etag_of(body: bytes) -> bytes:
    # SHA-256 rather than BLAKE2: with the CPU's SHA extensions, two thirds of the time.
    return b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    # Weak comparison (RFC 9110 §13.1.2): W/ prefixes are ignored.
    return any(
        candidate == b"*" or candidate.removeprefix(b"W/") == etag
        for candidate in (part.strip() for part in if_none_match.split(b","))
    )


class ConditionalGet:
    def __init__(self, app: ASGIApp, *, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        if_none_match = next((v for k, v in scope["headers"] if k == b"if-none-match"), None)
        held: Message | None = None

        async def tagged(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                if message["status"] == 200 and (b"content-type", b"application/json") in (
                    message.get("headers") or ()
                ):
                    held = message  # until its body, which the tag is made from
                    return
                await send(message)
                return
            if held is None:
                await send(message)
                return
            start, held = held, None
            if message.get("more_body", False):  # streamed: not one body to tag
                await send(start)
                await send(message)
                return
            etag = etag_of(message.get("body", b""))
            headers = [*start["headers"], (b"etag", etag), (b"cache-control", CACHE_CONTROL)]
            if if_none_match is not None and _matches(if_none_match, etag):
                kept = [(k, v) for k, v in headers if k in _KEPT_BY_304]
                await send({"type": "http.response.start", "status": 304, "headers": kept})
                await send({"type": "http.response.body", "body": b""})
                return
            await send({**start, "headers": headers})
            await send(message)

        await self.app(scope, receive, tagged)


_COMPONENTS = {
    "headers": {
        "ETag": {
            "description": "This answer's tag, to send back in `If-None-Match`",
            "schema": {"type": "string"},
        },
        "Cache-Control": {
            "description": "`private, no-cache`: keep it, ask again each time",
            "schema": {"type": "string"},
        },
    },
    "parameters": {
        "IfNoneMatch": {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "The `ETag` the phone holds: a 304 without a body if still so",
            "schema": {"type": "string"},
        }
    },
    "responses": {
        "NotModified": {
            "description": NOT_MODIFIED_DESCRIPTION,
            "headers": {"ETag": {"$ref": "#/components/headers/ETag"}},
        }
    },
}


def declare_not_modified(spec: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Say so in the OpenAPI of every GET under `prefix` whose answer is JSON."""
    for path, operations in spec["paths"].items():
        operation = operations.get("get")
        if not path.startswith(prefix) or operation is None:
            continue
        ok = operation.get("responses", {}).get("200", {})
        if "application/json" not in ok.get("content", {}):
            continue
        ok["headers"] = {
            name: {"$ref": f"#/components/headers/{name}"} for name in ("ETag", "Cache-Control")
        }
        parameters = operation.setdefault("parameters", [])
        parameters.append({"$ref": "#/components/parameters/IfNoneMatch"})
        operation["responses"]["304"] = {"$ref": "#/components/responses/NotModified"}
        operation["responses"] = dict(sorted(operation["responses"].items()))
    components = spec.setdefault("components", {})
    for kind, declared in _COMPONENTS.items():
        components.setdefault(kind, {}).update(declared)
    return spec
