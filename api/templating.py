"""One Jinja environment for every page (the web app, the pages behind e-mail links, the dev
mailbox), with the gettext catalogues installed: a page names its `language` in the context.
Styles and scripts come from /static only, so the Content-Security-Policy allows no inline
code at all."""

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.templating import Jinja2Templates

from ce4big.i18n import install_gettext

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}

environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
install_gettext(environment)
templates = Jinja2Templates(env=environment)


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    language: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, name, {**context, "language": language}, status_code=status_code
    )
    response.headers.update(SECURITY_HEADERS)
    response.headers.update(headers or {})
    return response
