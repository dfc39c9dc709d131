"""The development mailbox: what the SMTP sink of `ce4big dev` received, readable in the browser,
plus a preview of every e-mail kind in every language. Mounted only in development.

A message's HTML is shown in a sandboxed iframe (no scripts, no same-origin access) under a
strict Content-Security-Policy: mail is untrusted content even on a developer's machine.
"""

import email
import email.policy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import String, cast, func
from sqlmodel import col, select

from api.deps import SessionDep, SettingsDep
from api.templating import render
from ce4big.errors import NotFound
from ce4big.models import DevMessage

PAGE_SIZE = 200
SHOWN_HEADERS = (
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "Content-Language",
    "X-CE4BIG-Kind",
)
# Scripts off everywhere; the e-mail's inline styles are allowed, remote images are not.
CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src data:; frame-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_LINK = re.compile(r"https?://[^\s<>\"']+")

router = APIRouter(prefix="/dev/mailbox", tags=["dev"], include_in_schema=False)


class RenderedPreview(Protocol):
    @property
    def subject(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def html(self) -> str: ...


class MailPreviews(Protocol):
    """Renders sample e-mails; the web app does not know how (emails/ does: the composition
    roots pass `emails.previews.EmailPreviews`)."""

    @property
    def kinds(self) -> Sequence[str]: ...
    @property
    def languages(self) -> Sequence[str]: ...
    @property
    def timezone(self) -> str: ...
    def render(self, kind: str, language: str, *, base_url: str) -> RenderedPreview: ...


def get_previews(request: Request) -> MailPreviews:
    previews: MailPreviews | None = request.app.state.mail_previews
    if previews is None:
        raise NotFound("e-mail previews are not available: `ce4big dev` serves them")
    return previews


PreviewsDep = Annotated[MailPreviews, Depends(get_previews)]


@dataclass(frozen=True)
class MessageView:
    title: str
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    links: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    received_at: datetime | None = None
    invite_url: str | None = None
    raw_url: str | None = None


def get_dev_message_or_404(item_id: int, session: SessionDep) -> DevMessage:
    message = session.get(DevMessage, item_id)
    if message is None:
        raise NotFound(f"no message {item_id} in the dev mailbox")
    return message


DevMessageDep = Annotated[DevMessage, Depends(get_dev_message_or_404)]


def _page(request: Request, name: str, context: dict[str, object]) -> HTMLResponse:
    return render(request, name, context, language="en", headers={"Content-Security-Policy": CSP})


def _parse(raw: str) -> EmailMessage:
    parsed = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _part_text(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if not isinstance(part, EmailMessage):
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def _invite(message: EmailMessage) -> bytes | None:
    for part in message.walk():
        if part.get_content_type() in ("text/calendar", "application/ics"):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload
    return None


def _links(text: str | None) -> list[str]:
    return list(dict.fromkeys(m.rstrip(".,;)") for m in _LINK.findall(text or "")))


@router.get("", name="dev_mailbox")
def list_messages(
    request: Request,
    session: SessionDep,
    to: Annotated[str | None, Query(max_length=254)] = None,
) -> HTMLResponse:
    query = select(DevMessage).order_by(col(DevMessage.id).desc()).limit(PAGE_SIZE)
    if to and to.strip():
        recipients = func.lower(cast(col(DevMessage.recipients), String))
        query = query.where(recipients.contains(to.strip().lower(), autoescape=True))
    messages = list(session.exec(query))
    return _page(request, "devmailbox/list.html", {"messages": messages, "to": to or ""})


@router.get("/previews", name="dev_mailbox_previews")
def list_previews(request: Request, previews: PreviewsDep) -> HTMLResponse:
    return _page(
        request,
        "devmailbox/previews.html",
        {"kinds": list(previews.kinds), "languages": list(previews.languages)},
    )


@router.get("/previews/{kind}/{language}", name="dev_mailbox_preview")
def show_preview(
    request: Request, settings: SettingsDep, previews: PreviewsDep, kind: str, language: str
) -> HTMLResponse:
    if kind not in previews.kinds or language not in previews.languages:
        raise NotFound(f"no preview for {kind!r} in {language!r}")
    rendered = previews.render(kind, language, base_url=settings.base_url)
    view = MessageView(
        title=f"{kind} ({language})",
        headers=[("Subject", rendered.subject), ("Time zone", previews.timezone)],
        text=rendered.text,
        html=rendered.html,
        links=_links(rendered.text),
    )
    return _page(request, "devmailbox/message.html", {"view": view})


@router.get("/{item_id}", name="dev_mailbox_message")
def show_message(request: Request, message: DevMessageDep) -> HTMLResponse:
    parsed = _parse(message.raw)
    text = _part_text(parsed, "plain")
    view = MessageView(
        title=message.subject or "(no subject)",
        headers=[(name, str(parsed[name])) for name in SHOWN_HEADERS if parsed[name] is not None],
        text=text,
        html=_part_text(parsed, "html"),
        links=_links(text),
        recipients=message.recipients,
        received_at=message.received_at,
        invite_url=(
            str(request.url_for("dev_mailbox_invite", item_id=message.id))
            if _invite(parsed) is not None
            else None
        ),
        raw_url=str(request.url_for("dev_mailbox_raw", item_id=message.id)),
    )
    return _page(request, "devmailbox/message.html", {"view": view})


@router.get("/{item_id}/invite.ics", name="dev_mailbox_invite")
def download_invite(message: DevMessageDep) -> Response:
    invite = _invite(_parse(message.raw))
    if invite is None:
        raise NotFound(f"message {message.id} carries no invite")
    return Response(
        invite,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="invite-{message.id}.ics"'},
    )


@router.get("/{item_id}/raw", name="dev_mailbox_raw")
def show_raw(message: DevMessageDep) -> Response:
    return Response(
        message.raw,
        media_type="text/plain; charset=utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )
