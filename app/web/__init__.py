"""Server-rendered pages for staff (scorers, attendants, village admins, town supervisors) at
/web, outside the API's OpenAPI contract."""

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles

from app.errors import AppError
from app.web.pages import render, router, see_other
from app.web.session import SignInRequired, clear_session

STATIC_DIR = Path(__file__).parent / "static"
PREFIX = "/web/"


def _for_pages(app: FastAPI, error: type[Exception]) -> None:
    """Refusals on a page become a page (or the sign-in form); the API keeps its problems.

    The request's transaction has already rolled back (or kept what the refusal keeps) when
    the handler runs, exactly as for the API."""
    api_handler: Any = app.exception_handlers[error]

    async def handler(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith(PREFIX):
            response: Response = await api_handler(request, exc)
            return response
        if isinstance(exc, SignInRequired):
            response = see_other("/web/login")
            clear_session(response)
            return response
        if isinstance(exc, AppError):
            status, title, code = exc.status, exc.title, exc.code
        else:
            status, title, code = 422, "填写的内容不符合要求", "request.invalid"
        target = request.headers.get("HX-Target")
        if request.headers.get("HX-Request") and target:
            # An enhanced form: the message goes into its result line, the form stays.
            response = render(request, "_error.html", status_code=status, error=title, code=code)
            response.headers["HX-Retarget"] = f"#{target}-result"
            response.headers["HX-Reswap"] = "innerHTML"
            return response
        page = "login.html" if request.url.path == "/web/login" else "error.html"
        return render(request, page, status_code=status, error=title, code=code)

    app.add_exception_handler(error, handler)


def install_web(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/web/static", StaticFiles(directory=STATIC_DIR), name="web-static")
    _for_pages(app, AppError)
    _for_pages(app, RequestValidationError)
