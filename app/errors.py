"""One error hierarchy, rendered as RFC 9457 problem details with a stable machine code."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class AppError(Exception):
    status: int = 400
    code: str = "error"
    title: str = "请求有误"
    # Some refusals must still persist what led to them (a failed login attempt, a revoked
    # token family); the request transaction commits instead of rolling back for those.
    keeps_changes: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        title: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        keeps_changes: bool | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or self.title)
        if keeps_changes is not None:
            self.keeps_changes = keeps_changes
        self.detail = detail
        if code is not None:
            self.code = code
        if title is not None:
            self.title = title
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.extensions = extensions


class BadRequest(AppError):
    status = 400
    code = "request.bad"
    title = "请求有误"


class Unauthorized(AppError):
    status = 401
    code = "auth.unauthenticated"
    title = "请先登录"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="village-points"'})
        super().__init__(detail, **kwargs)


class Forbidden(AppError):
    status = 403
    code = "auth.forbidden"
    title = "没有权限"


class NotFound(AppError):
    status = 404
    code = "not_found"
    title = "未找到"


class Conflict(AppError):
    status = 409
    code = "conflict"
    title = "与现有数据冲突"


class Unprocessable(AppError):
    status = 422
    code = "request.invalid"
    title = "内容不符合要求"


class TooManyRequests(AppError):
    status = 429
    code = "rate_limited"
    title = "操作太频繁，请稍后再试"


class ServiceUnavailable(AppError):
    status = 503
    code = "service.unavailable"
    title = "服务暂时不可用，请稍后再试"


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_HTTP_CODES: dict[int, tuple[str, str]] = {
    404: ("route.not_found", "接口不存在"),
    405: ("route.method_not_allowed", "不支持该请求方法"),
    413: ("request.too_large", "上传内容过大"),
}


def _sqlstate(exc: DBAPIError) -> str:
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        state = getattr(error, "sqlstate", None)
        if isinstance(state, str):
            return state
    return ""


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.code,
            exc.title,
            exc.detail,
            instance=request.url.path,
            headers=exc.headers,
            **exc.extensions,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return problem_response(
            422,
            "request.invalid",
            "提交的内容格式不正确",
            "The request body, path or query did not validate.",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title = _HTTP_CODES.get(exc.status_code, (f"http.{exc.status_code}", "请求失败"))
        return problem_response(
            exc.status_code,
            code,
            title,
            str(exc.detail) if exc.detail else None,
            instance=request.url.path,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(IntegrityError)
    async def integrity_error(request: Request, exc: IntegrityError) -> JSONResponse:
        # Services check what they can first; this is the race that only the database saw.
        return problem_response(
            409,
            "conflict.integrity",
            "与现有数据冲突",
            "The change conflicts with data already stored.",
            instance=request.url.path,
        )

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        # Values that pass validation but not PostgreSQL (SQLSTATE class 22: a NUL character in
        # text, a number beyond the column's range) are the caller's; the rest is ours.
        if isinstance(exc, DataError) or _sqlstate(exc).startswith("22"):
            return problem_response(
                422,
                "request.invalid_value",
                "提交的内容含有无法保存的字符或数值",
                "A value cannot be stored (a NUL character, or a number out of range).",
                instance=request.url.path,
            )
        log.error("database error", exc_info=exc)
        return problem_response(500, "internal", "服务器出错了", instance=request.url.path)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return problem_response(500, "internal", "服务器出错了", instance=request.url.path)


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this API is answered."""

    type: str = "about:blank"
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _problem("Not signed in, or the token is expired, invalid or revoked"),
    403: _problem("Signed in without a role that may do this"),
    404: _problem("Not found, or outside the caller's scope"),
    409: _problem("Conflicts with the current state"),
    422: _problem("The request did not validate"),
}


def problem_media_type(spec: dict[str, Any]) -> dict[str, Any]:
    """FastAPI files every response model under application/json; problems are not that."""
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if str(status)[0] in "45" and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
    return spec
