"""Rendering: a typed context in, a subject, an HTML part and a text part out.

Each kind has one template per part, `emails/templates/<kind>.{subject.txt,html,txt}`, written
in English and translated through the gettext catalogues of `ce4big.i18n` into the language the
render names. HTML templates autoescape; every template runs with `StrictUndefined`, so a missing
field fails loudly. Dates and times are shown in the recipient's language and time zone.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

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

from ce4big.domain import LANGUAGES, CooperationType, MeetingMode
from ce4big.i18n import (
    format_date,
    format_datetime,
    format_months_ago,
    format_span,
    install_gettext,
    label,
)
from ce4big.mailerrors import EmailContextError
from emails.contexts import MailContext, Slot

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
SUBJECT_MAX_CHARS = 250
VOCABULARIES = {"cooperation": CooperationType, "meeting_mode": MeetingMode}


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


@pass_context
def format_date_filter(ctx: Context, value: datetime) -> str:
    return format_date(value, zone=ctx["timezone"], language=ctx["language"])


@pass_context
def format_datetime_filter(ctx: Context, value: datetime) -> str:
    return format_datetime(value, zone=ctx["timezone"], language=ctx["language"])


@pass_context
def format_span_filter(ctx: Context, start: datetime, end: datetime) -> str:
    return format_span(start, end, zone=ctx["timezone"], language=ctx["language"])


@pass_context
def format_slot_filter(ctx: Context, slot: Slot) -> str:
    return format_span_filter(ctx, slot.start, slot.end)


@pass_context
def ago_filter(ctx: Context, months: int) -> str:
    return format_months_ago(months, language=ctx["language"])


@pass_context
def label_filter(ctx: Context, value: str, vocabulary: str) -> str:
    return label(ctx["language"], VOCABULARIES[vocabulary], value)


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
    install_gettext(env)
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
        self, *, kind: str, context: MailContext, language: str, timezone: str
    ) -> RenderedEmail:
        if language not in LANGUAGES:
            raise EmailContextError(f"no translation for language {language!r}")
        values: dict[str, Any] = {
            name: getattr(context, name) for name in type(context).model_fields
        }
        values.update(kind=kind, language=language, timezone=timezone)
        try:
            subject = _subject(self._template(kind, "subject.txt").render(values))
            values["subject"] = subject
            html = self._template(kind, "html").render(values)
            text = _tidy_text(self._template(kind, "txt").render(values))
        except TemplateNotFound as exc:
            raise EmailContextError(f"no template {exc.name!r}") from exc
        return RenderedEmail(subject=subject, html=html, text=text)

    def _template(self, kind: str, part: str) -> Any:
        return self._env.get_template(f"{kind}.{part}")


@lru_cache(maxsize=1)
def default_renderer() -> EmailRenderer:
    return EmailRenderer()


def render_email(*, kind: str, context: MailContext, language: str, timezone: str) -> RenderedEmail:
    return default_renderer().render(
        kind=kind, context=context, language=language, timezone=timezone
    )
