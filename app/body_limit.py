"""A ceiling on request bodies, enforced before a route reads them: by the declared
Content-Length, and by counting the bytes of a chunked body as they arrive."""

import re
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import problem_response


@dataclass(frozen=True)
class Limit:
    max_bytes: int
    # The problem a refusal answers with: a route may name its own (a photo's).
    code: str = "request.too_large"
    title: str = "提交的内容过大"


_BODILESS = frozenset({"GET", "HEAD"})


class _Exceeded(Exception):
    pass


def route_limits(
    prefix: str, default: int, *, import_max_bytes: int, photo: Limit
) -> Callable[[str, str], Limit | None]:
    """The limit for a method and path; none for a GET or HEAD, whose body no route reads (and
    uvicorn stops reading a body nobody asks for once its buffer is full), so the phone's reads
    skip this middleware's wrapping."""
    photos = re.compile(rf"^{re.escape(prefix)}/photos/?$")
    household_import = re.compile(rf"^{re.escape(prefix)}/villages/[^/]+/households/import/?$")

    def limit(method: str, path: str) -> Limit | None:
        if method in _BODILESS:
            return None
        if method == "POST" and photos.match(path):
            return photo
        if method == "POST" and household_import.match(path):
            return Limit(import_max_bytes)
        return Limit(default)

    return limit


class BodyLimit:
    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str, str], Limit | None]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit.max_bytes:
            await self._refuse(scope, receive, send, limit)
            return
        received = 0
        exceeded = started = False

        async def counted() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    exceeded = True
                    raise _Exceeded
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            # Whatever the route made of a body it could not read (FastAPI calls it a 400) is
            # replaced by the 413 below.
            if exceeded:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send, limit)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: Limit) -> None:
        response = problem_response(
            413,
            limit.code,
            limit.title,
            f"The request body may be at most {limit.max_bytes} bytes.",
            instance=scope["path"],
            max_bytes=limit.max_bytes,
            # The rest of the body is not read; the client must not send it on this connection.
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
