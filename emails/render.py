"""Rendering: a typed context in, a subject, an HTML part and a text part out.

Templates live in `emails/templates/<language>/<kind>.{subject.txt,html,txt}`. HTML templates
autoescape; every template runs with `StrictUndefined`, so a missing field fails loudly.
Dates and times are shown in the recipient's language and time zone.
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time, format_timedelta
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context
from markupsafe import Markup, escape

from ce4big.domain import LANGUAGES
from ce4big.i18n import BABEL_LOCALES, DATETIME_PATTERNS, LABELS
from ce4big.mailerrors import EmailContextError
from emails.contexts import EmailContext, Slot

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
SUBJECT_MAX_CHARS = 250
EN_DASH = "\N{EN DASH}"


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def _locale(ctx: Context) -> str:
    return BABEL_LOCALES[ctx["language"]]


def _zone(ctx: Context) -> ZoneInfo:
    return ZoneInfo(ctx["timezone"])


def _local(ctx: Context, value: datetime) -> datetime:
    return value.astimezone(_zone(ctx))


def _zone_name(ctx: Context, value: datetime) -> str:
    # The long name says whether summer time applies, which an offset alone leaves unclear.
    return format_time(_local(ctx, value), "zzzz", tzinfo=_zone(ctx), locale=_locale(ctx))


def _time(ctx: Context, value: datetime) -> str:
    return format_time(_local(ctx, value), "short", tzinfo=_zone(ctx), locale=_locale(ctx))


@pass_context
def format_date_filter(ctx: Context, value: datetime) -> str:
    return format_date(_local(ctx, value), "long", locale=_locale(ctx))


@pass_context
def format_datetime_filter(ctx: Context, value: datetime) -> str:
    date = format_date(_local(ctx, value), "full", locale=_locale(ctx))
    joined = DATETIME_PATTERNS[ctx["language"]].format(date=date, time=_time(ctx, value))
    return f"{joined} ({_zone_name(ctx, value)})"


@pass_context
def format_span_filter(ctx: Context, start: datetime, end: datetime) -> str:
    local_start, local_end = _local(ctx, start), _local(ctx, end)
    if local_start.date() != local_end.date():
        return f"{format_datetime_filter(ctx, start)} {EN_DASH} {format_datetime_filter(ctx, end)}"
    date = format_date(local_start, "full", locale=_locale(ctx))
    return f"{date}, {_time(ctx, start)}{EN_DASH}{_time(ctx, end)} ({_zone_name(ctx, start)})"


@pass_context
def format_slot_filter(ctx: Context, slot: Slot) -> str:
    return format_span_filter(ctx, slot.start, slot.end)


@pass_context
def ago_filter(ctx: Context, months: int) -> str:
    # A high threshold keeps "18 months ago" from being rounded to "2 years ago".
    return format_timedelta(
        timedelta(days=-30.44 * months),
        granularity="month",
        threshold=1000,
        add_direction=True,
        locale=_locale(ctx),
    )


@pass_context
def label_filter(ctx: Context, value: str, vocabulary: str) -> str:
    return LABELS[vocabulary][ctx["language"]].get(value, value.replace("_", " "))


def ucfirst_filter(value: str) -> str:
    return value[:1].upper() + value[1:]


def nl2br_filter(value: str) -> Markup:
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return Markup("<br>\n").join(escape(line) for line in lines)


def quote_filter(value: str) -> str:
    lines = value.replace("\r\n", "\n").replace("\r", "\n").strip("\n").split("\n")
    return "\n".join(f"> {line}".rstrip() for line in lines)


def build_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        date=format_date_filter,
        datetime=format_datetime_filter,
        span=format_span_filter,
        slot=format_slot_filter,
        ago=ago_filter,
        label=label_filter,
        ucfirst=ucfirst_filter,
        nl2br=nl2br_filter,
        quote=quote_filter,
    )
    return env


def one_line(value: str) -> str:
    """Whitespace, CR and LF included, collapsed to single spaces: fit for a header."""
    return " ".join(value.split())


def _subject(value: str) -> str:
    subject = one_line(value)
    if len(subject) > SUBJECT_MAX_CHARS:
        subject = subject[: SUBJECT_MAX_CHARS - 1].rstrip() + "…"
    return subject


def _tidy_text(value: str) -> str:
    # "-- " (with its space) is the signature separator mail clients recognise.
    lines = [line if line == "-- " else line.rstrip() for line in value.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


class EmailRenderer:
    def __init__(self) -> None:
        self._env = build_environment()

    def render(
        self, *, kind: str, context: EmailContext, language: str, timezone: str
    ) -> RenderedEmail:
        if language not in LANGUAGES:
            raise EmailContextError(f"no templates for language {language!r}")
        values: dict[str, Any] = {
            name: getattr(context, name) for name in type(context).model_fields
        }
        values.update(kind=kind, language=language, timezone=timezone)
        try:
            subject = _subject(self._template(language, kind, "subject.txt").render(values))
            values["subject"] = subject
            html = self._template(language, kind, "html").render(values)
            text = _tidy_text(self._template(language, kind, "txt").render(values))
        except TemplateNotFound as exc:
            raise EmailContextError(f"no template {exc.name!r}") from exc
        return RenderedEmail(subject=subject, html=html, text=text)

    def _template(self, language: str, kind: str, part: str) -> Any:
        return self._env.get_template(f"{language}/{kind}.{part}")


@lru_cache(maxsize=1)
def default_renderer() -> EmailRenderer:
    return EmailRenderer()


def render_email(
    *, kind: str, context: EmailContext, language: str, timezone: str
) -> RenderedEmail:
    return default_renderer().render(
        kind=kind, context=context, language=language, timezone=timezone
    )
