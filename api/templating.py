"""One Jinja environment for every page (the web app, the pages behind e-mail links, the dev
mailbox), with the gettext catalogues installed: a page names its `language` in the context.
Styles and scripts come from /static only, so the Content-Security-Policy allows no inline
code at all."""

from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context
from jinja2.runtime import Context
from starlette.templating import Jinja2Templates

from ce4big.i18n import (
    format_datetime,
    format_day,
    format_number,
    format_share,
    format_short_datetime,
    format_span,
    install_gettext,
    label,
)

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


def _zone(ctx: Context) -> str:
    """The reader's zone: the signed-in visitor's, else the page's `timezone`, else UTC."""
    visitor = ctx.get("visitor")
    zone = getattr(visitor, "timezone", None) or ctx.get("timezone")
    return zone if isinstance(zone, str) else "UTC"


@pass_context
def _datetime(ctx: Context, value: datetime) -> str:
    return format_datetime(value, zone=_zone(ctx), language=ctx["language"])


@pass_context
def _when(ctx: Context, value: datetime, zone: str | None = None) -> str:
    return format_short_datetime(value, zone=zone or _zone(ctx), language=ctx["language"])


@pass_context
def _span(ctx: Context, start: datetime, end: datetime, zone: str | None = None) -> str:
    return format_span(start, end, zone=zone or _zone(ctx), language=ctx["language"])


@pass_context
def _day(ctx: Context, value: date) -> str:
    return format_day(value, language=ctx["language"])


@pass_context
def _number(ctx: Context, value: float, digits: int = 1) -> str:
    return format_number(value, language=ctx["language"], digits=digits)


@pass_context
def _share(ctx: Context, value: float) -> str:
    return format_share(value, language=ctx["language"])


environment.filters.update(
    datetime=_datetime, when=_when, span=_span, day=_day, number=_number, share=_share
)
# The language switch offers each language in its own name.
environment.globals["languages"] = [
    ("en", "English"),
    ("fr", "Français"),
    ("de", "Deutsch"),
    ("pl", "Polski"),
]
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


# Form choices that every page offers the same way.
SLOT_MINUTES = (30, 45, 60, 90, 120)
DEFAULT_SLOT_MINUTES = 60
# Time zones offered in pickers, after the reader's own (and the other side's); any IANA zone is
# accepted where a zone is typed.
OFFERED_ZONES = (
    "Europe/Brussels",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Warsaw",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/Madrid",
    "Europe/Rome",
    "Europe/Amsterdam",
    "Europe/Luxembourg",
    "Europe/Zurich",
    "Europe/Vienna",
    "Europe/Prague",
    "Europe/Copenhagen",
    "Europe/Stockholm",
    "Europe/Oslo",
    "Europe/Helsinki",
    "Europe/Athens",
    "Europe/Bucharest",
    "UTC",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Toronto",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Asia/Kolkata",
    "Australia/Sydney",
)


def zone_choices(*preferred: str | None) -> list[str]:
    return list(dict.fromkeys([*(z for z in preferred if z), *OFFERED_ZONES]))


def options(language: str, vocabulary: type[StrEnum]) -> list[tuple[str, str]]:
    """A closed vocabulary as (value, label in `language`) for a select or radio group."""
    return [(value, label(language, vocabulary, value)) for value in vocabulary]
