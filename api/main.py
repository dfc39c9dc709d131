"""The web app: factory, lifespan, error format, health and identity routes."""

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from api import web
from api.deps import LinkLimit
from api.limits import BodyLimitMiddleware, FixedWindowCounter
from api.routes import actions, catalogue, core, devmailbox, exchanges, pages, reports, users
from api.routes.devmailbox import MailPreviews
from api.templating import STATIC_DIR
from api.web.auth import SignInMailer
from api.web.errors import is_web_page, sign_in_redirect, web_error_page
from api.web.visitor import SignInRequired
from ce4big.db import engine_for
from ce4big.errors import AppError
from ce4big.settings import Settings, get_settings
from ce4big.temporal import TemporalConnector

logger = logging.getLogger(__name__)

POOL_RETRY_AFTER_SECONDS = 2
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# Every response that does not set its own (the pages set a stricter policy of their own).
DEFAULT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
# Swagger UI and ReDoc load their scripts and styles from a CDN and run inline code: the
# policy of their pages forbids framing and foreign forms, not their own code.
DOCS_PATHS = ("/docs", "/redoc")
DOCS_CSP = "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
HSTS = "max-age=31536000"

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _field_name(location: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _error_response(
    request: Request,
    *,
    status_code: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """JSON for the API; a page (of the web app, or behind an e-mail link) gets a page in its
    reader's language."""
    response: Response
    if pages.is_page_request(request):
        response = pages.error_page(request, status_code=status_code, code=code, message=message)
        response.headers.update(headers or {})
        return response
    if is_web_page(request):
        response = web_error_page(request, status_code=status_code, code=code, message=message)
        response.headers.update(headers or {})
        return response
    return JSONResponse(
        error_body(code, message, **extra), status_code=status_code, headers=headers
    )


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    if isinstance(exc, SignInRequired) and is_web_page(request):
        return sign_in_redirect(request)
    return _error_response(
        request,
        status_code=exc.status_code,
        code=exc.code,
        message=exc.message,
        headers=exc.headers(),
        **exc.details(),
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code
    return _error_response(
        request, status_code=exc.status_code, code=code, message=message, headers=exc.headers
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    fields = [
        {"field": _field_name(err.get("loc", ())), "message": str(err.get("msg", "invalid"))}
        for err in exc.errors()
    ]
    first = fields[0] if fields else {"field": "body", "message": "invalid"}
    message = f"{first['field']}: {first['message']}"
    return _error_response(request, status_code=422, code="invalid", message=message, fields=fields)


async def _database_error(request: Request, exc: Exception) -> Response:
    logger.exception("database error", exc_info=exc)
    return _error_response(
        request,
        status_code=503,
        code="unavailable",
        message="the database did not complete the request",
    )


async def _pool_exhausted(request: Request, exc: Exception) -> Response:
    # Every connection is busy with other requests' SQL: a short wait is cheaper for the client
    # than queueing here, and nothing of this request was written.
    logger.warning("database pool exhausted: %s", exc)
    return _error_response(
        request,
        status_code=503,
        code="unavailable",
        message="the server is busy: retry in a moment",
        headers={"Retry-After": str(POOL_RETRY_AFTER_SECONDS)},
    )


def serving_refusal(settings: Settings, host: str) -> str | None:
    """Why the app may not listen on `host` with these settings, or None. Development settings
    (the placeholder secret, the dev mailbox of every e-mail) stay on this machine."""
    if settings.is_development and host not in LOOPBACK_HOSTS:
        return (
            f"CE4BIG_ENV is development (the default), which serves only this machine: set"
            f" CE4BIG_ENV=production and SECRET_KEY to listen on {host}"
        )
    return None


class SecurityHeaders:
    """Security headers on every response (the JSON API, OpenAPI and its docs, static files),
    and HSTS once the app is served over https."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self._app = app
        self._https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path = str(scope["path"])
        wanted = dict(DEFAULT_HEADERS)
        if path.startswith(DOCS_PATHS):
            wanted["Content-Security-Policy"] = DOCS_CSP
        if path.startswith("/api/"):
            wanted["Cache-Control"] = "no-store"
        if self._https:
            wanted["Strict-Transport-Security"] = HSTS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in wanted.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self._app(scope, receive, send_with_headers)


def create_app(
    settings: Settings | None = None,
    *,
    temporal_client: Client | None = None,
    mail_previews: MailPreviews | None = None,
    sign_in_mailer: SignInMailer | None = None,
) -> FastAPI:
    """The web app and the JSON API. The web edge does not import emails/: the composition
    roots pass what sends and renders mail (`emails.signin.SignInMailer` for the sign-in
    links, `emails.previews.EmailPreviews` for the development mailbox's samples)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = engine_for(settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.temporal = TemporalConnector(settings, temporal_client)
        app.state.mail_previews = mail_previews
        app.state.sign_in_mailer = sign_in_mailer
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="CE4BIG Exchange",
        version="0.1.0",
        summary="Cross-cluster exchanges between healthcare SMEs and partners.",
        lifespan=lifespan,
    )

    def body_limit(path: str) -> int:
        if path.startswith("/api/v1/catalogue/import"):
            return settings.catalogue_max_upload_bytes
        if path == "/catalogue/import":
            # The web form's file comes wrapped in multipart with its CSRF field.
            return settings.catalogue_max_upload_bytes + catalogue.MULTIPART_OVERHEAD
        return settings.max_body_bytes

    app.state.rate_limits = FixedWindowCounter()
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    app.add_middleware(SecurityHeaders, https=settings.base_url.startswith("https://"))
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)
    app.add_exception_handler(PoolTimeout, _pool_exhausted)
    app.include_router(core.router)
    app.include_router(core.api_router, prefix="/api/v1")
    app.include_router(catalogue.router, prefix="/api/v1")
    app.include_router(exchanges.router, prefix="/api/v1")
    app.include_router(actions.router, prefix="/api/v1")
    app.include_router(users.router, prefix="/api/v1")
    app.include_router(reports.router, prefix="/api/v1")
    # The pages behind e-mail links act on their POST: counted as link use.
    app.include_router(pages.router, dependencies=[LinkLimit])
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if settings.is_development:
        app.include_router(devmailbox.router)
    return app
