"""`/t/{token}`: the page behind every e-mail link.

Rendered on the server in the recipient's language and usable without JavaScript. A GET only
shows what the link is for, because mail scanners prefetch links; each decision is a form that
posts back with a CSRF field and reaches the workflow through `act_on_link`, as the JSON API does.
The pages set no cookie: the link's token is the recipient's credential.
"""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from starlette.datastructures import FormData
from temporalio.client import Client

from api.deps import EngineDep, SettingsDep, TemporalDep
from api.templating import DEFAULT_SLOT_MINUTES, SLOT_MINUTES, options, render, zone_choices
from api.web.errors import PENDING_TEXTS
from api.web.forms import form_text
from ce4big.db import run_in_session
from ce4big.domain import CooperationType, MeetingMode, Outcome, Stage, SurveyOutcome, WaveOutcome
from ce4big.errors import AppError, Forbidden, Invalid, NotFound
from ce4big.i18n import (
    N_,
    format_datetime,
    format_span,
    label,
    negotiate_language,
    translate,
)
from ce4big.links import Link, act_on_link, describe_link, open_link_async
from ce4big.models import DESCRIPTION_MAX, NOTE_MAX, TITLE_MAX, ActionToken
from ce4big.schemas import MAX_SLOTS, ActionBody
from ce4big.security import hash_token
from ce4big.settings import Settings

PAGE_PREFIX = "/t/"
CSRF_FIELD = "csrf"
TOKEN_MIN, TOKEN_MAX = 16, 100

# Who asks, when the requester's name is not shown.
A_MEMBER = N_("a member company")
# What each kind of link asks, and what it is for.
HEADINGS: dict[str, str] = {
    "introduction": N_("Introduction request"),
    "vet": N_("Vet this exchange request"),
    "amend": N_("Amend your request"),
    "shortlist": N_("Choose the candidates to approach"),
    "host_review": N_("An introduction into your cluster"),
    "slots": N_("Choose a meeting time"),
    "survey": N_("How did the meeting go?"),
    "outcome": N_("What came of this exchange?"),
    "view": N_("Where this exchange stands"),
}

LEADS: dict[str, str] = {
    "introduction": N_(
        "%(requester)s (%(cluster)s) is looking for a partner, and %(subject)s was proposed. If "
        "you accept, both sides receive each other's contact details by e-mail. If you decline, "
        "nobody will contact you about this request."
    ),
    "vet": N_(
        "A member of your cluster sent this request. Approve it to start the search for partners, "
        "ask for changes, or reject it with a reason."
    ),
    "amend": N_("Your cluster's broker asked for changes. Edit the request and send it back."),
    "shortlist": N_(
        "The search found these candidates in other clusters. Choose 1 to 5 of them; their "
        "clusters review each one before anyone is contacted."
    ),
    "host_review": N_(
        "%(requester)s (%(cluster)s) would like to be introduced to %(subject)s, a member of your "
        "cluster. Endorse the introduction, or veto it with a note."
    ),
    "slots": N_("Pick one of the proposed slots to confirm the meeting, or propose others."),
    "survey": N_("A few answers help the clusters show what the programme achieves."),
    "outcome": N_("Some months have passed since your meeting. Tell us where things stand."),
    "view": N_("This link only shows where the exchange stands: there is nothing to decide here."),
}
# What the recipient is told after each decision.
DONE_MESSAGES: dict[str, str] = {
    "accept": N_(
        "You accepted the introduction. Both sides will receive each other's contact details by "
        "e-mail."
    ),
    "decline": N_("You declined the introduction. Nobody will contact you about this request."),
    "approve": N_("You approved the request: the search for partners starts now."),
    "reject": N_("You rejected the request. The requester is told why."),
    "request_changes": N_("You asked for changes. The requester will amend the request."),
    "amend": N_("Your amended request went back to your cluster for vetting."),
    "shortlist": N_("The shortlist is set. The candidates' clusters review it next."),
    "endorse": N_("You endorsed the introduction."),
    "veto": N_("You vetoed the introduction: this organisation will not be contacted."),
    "pick_slot": N_("The meeting is confirmed. An invitation is on its way to both sides."),
    "propose_slots": N_("Your slots were sent to the other side, who will pick one."),
    "survey": N_("Your answers are recorded."),
    "outcome": N_("Your answer is recorded."),
}

PROPOSED_BY: dict[str, str] = {
    "requester": N_("Proposed by the requester, in the time zone %(zone)s."),
    "partner": N_("Proposed by the partner, in the time zone %(zone)s."),
}
# When a link cannot be used, or a decision is refused: a heading and what it means.
ERROR_TEXTS: dict[str, tuple[str, str]] = {
    "link_used": (
        N_("This link has already been used"),
        N_(
            "Each link works once, and this one has done its job. To change your answer, reply to "
            "the e-mail: your cluster will help."
        ),
    ),
    "link_revoked": (
        N_("This link no longer works"),
        N_("The step it was for is over: the exchange has moved on or has been closed."),
    ),
    "link_expired": (
        N_("This link has expired"),
        N_(
            "It was valid for a limited time. If you still want to answer, reply to the e-mail: "
            "your cluster will help."
        ),
    ),
    "recipient_changed": (
        N_("This link is no longer yours to use"),
        N_(
            "It was sent for a role that has changed since: the account was deactivated or moved "
            "to another cluster or organisation, or the organisation named another contact. "
            "Nothing was recorded. Reply to the e-mail: your cluster will help."
        ),
    ),
    "not_found": (
        N_("This link is unknown"),
        N_("Check that you opened the whole address from the e-mail."),
    ),
    "csrf_failed": (
        N_("This form could not be accepted"),
        N_(
            "For your security, a form is only accepted from the page that showed it. Open the "
            "link from your e-mail again and send the form once more. Nothing was recorded."
        ),
    ),
    "too_many_requests": (
        N_("Too many attempts in a short time"),
        N_("Nothing was recorded. Wait a minute, then send the form again."),
    ),
    "conflict": (
        N_("This step is no longer open"),
        N_("The exchange has moved on, so this answer could not be taken. Nothing was recorded."),
    ),
    "forbidden": (
        N_("This link does not allow that"),
        N_("The answer was not taken. Nothing was recorded."),
    ),
    "invalid": (
        N_("Please check what you entered"),
        N_("Nothing was sent yet. Correct the field below and send the form again."),
    ),
    "unavailable": (
        N_("The service is busy"),
        N_("Nothing was recorded. Please try again in a minute."),
    ),
    "pending": PENDING_TEXTS,
    "other": (N_("Something went wrong"), N_("Nothing was recorded. Please try again later.")),
}
# Labels of form fields, for the messages that name one.
FIELD_LABELS: dict[str, str] = {
    "reason": N_("Reason (optional, shared with the requester's cluster)"),
    "note": N_("Note (optional)"),
    "start": N_("Start"),
    "slots": N_("Proposed slots"),
    "timezone": N_("Time zone"),
    "outcome": N_("Outcome"),
    "satisfaction": N_("How satisfied are you with the exchange? (1 = not at all, 5 = very)"),
    "recommend": N_(
        "Would you recommend the programme to a colleague? (0 = never, 10 = certainly)"
    ),
    "comment": N_("Comment (optional)"),
    "agreement_type": N_("Type of agreement (if one was reached)"),
    "organisation_ids": N_("Candidates"),
    "title": N_("Title"),
    "description": N_("Description"),
    "location": N_("Place or video link (optional)"),
    "mode": N_("Format"),
}
# Link problems whose page says all there is to say; others also show the technical detail.
_PLAIN_CODES = frozenset(
    {"link_used", "link_revoked", "link_expired", "recipient_changed", "not_found", "csrf_failed"}
)

router = APIRouter(tags=["pages"], include_in_schema=False)


class CsrfFailed(Forbidden):
    code = "csrf_failed"


@dataclass(frozen=True)
class SlotView:
    start: str  # as proposed: the value the form sends back
    yours: str
    theirs: str


@dataclass(frozen=True)
class CandidateView:
    organisation_id: str
    name: str
    cluster: str
    reasons: list[str]


@dataclass(frozen=True)
class LinkView:
    token: str
    kind: str
    heading: str
    lead: str
    allowed: tuple[str, ...]
    title: str
    summary: str
    requester: str
    home_cluster: str
    cooperation: str
    stage: str
    outcome: str | None
    subject: str | None
    candidates: list[CandidateView]
    slots: list[SlotView]
    proposed_by: str | None
    same_zone: bool
    timezone: str
    zones: list[str]
    expires: str
    csrf: str


def is_page_request(request: Request) -> bool:
    return str(request.scope.get("path", "")).startswith(PAGE_PREFIX)


def render_page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    language: str,
    status_code: int = 200,
) -> HTMLResponse:
    # The token is in the URL: no search engine may keep the page.
    return render(
        request,
        name,
        context,
        language=language,
        status_code=status_code,
        headers={"X-Robots-Tag": "noindex, nofollow"},
    )


def error_page(request: Request, *, status_code: int, code: str, message: str) -> HTMLResponse:
    """The HTML twin of the JSON error body, for page routes (see api.main)."""
    language = page_language(request)
    heading, explanation = ERROR_TEXTS.get(code, ERROR_TEXTS["other"])
    return render_page(
        request,
        "action/error.html",
        {
            "heading": translate(language, heading),
            "explanation": translate(language, explanation),
            "details": None if code in _PLAIN_CODES else message,
        },
        language=language,
        status_code=status_code,
    )


def _stored_language(session: Session, plain: str) -> str | None:
    payload = session.exec(
        select(col(ActionToken.payload)).where(ActionToken.token_hash == hash_token(plain))
    ).first()
    return str(payload.get("language")) if payload and payload.get("language") else None


def page_language(request: Request) -> str:
    return negotiate_language(
        getattr(request.state, "language", None),
        accept_language=request.headers.get("accept-language"),
    )


async def get_page_link(request: Request, token: str, engine: EngineDep) -> Link:
    if not TOKEN_MIN <= len(token) <= TOKEN_MAX:
        raise NotFound("this link is unknown: check that it was copied whole")
    try:
        link = await open_link_async(engine=engine, plain=token)
    except AppError:
        # The error page speaks the recipient's language even when the link no longer works.
        request.state.language = await run_in_session(
            engine, lambda session: _stored_language(session, token)
        )
        raise
    request.state.language = link.language
    return link


PageLink = Annotated[Link, Depends(get_page_link)]


def csrf_value(*, settings: Settings, token_hash: str) -> str:
    """The hidden field: bound to this link, and unguessable without the secret key.

    It depends on no per-browser cookie. A link opened from webmail is a cross-site navigation,
    on which a browser withholds a SameSite=Strict cookie: each link opened that way minted a
    new one, and the forms of the links already open failed. Nothing is lost by it: the token in
    the path is the credential, so a site that does not know it cannot aim a form at this page,
    and one that knows it has no need of the recipient's browser."""
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, f"link-form:{token_hash}".encode(), hashlib.sha256).hexdigest()


def _check_csrf(*, form: FormData, link: Link, settings: Settings) -> None:
    sent = form.get(CSRF_FIELD)
    expected = csrf_value(settings=settings, token_hash=link.token.token_hash)
    if not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise CsrfFailed("the form's security check failed: open the link again and resend it")


def _slots_from_form(form: FormData) -> list[dict[str, str]]:
    slots = []
    for number in range(MAX_SLOTS):
        start_text = form_text(form, f"slot_start_{number}")
        if not start_text:
            continue
        try:
            start = datetime.fromisoformat(start_text)
            minutes = int(form_text(form, f"slot_minutes_{number}") or DEFAULT_SLOT_MINUTES)
        except ValueError:
            raise Invalid(f"slots.{number}: not a date and time") from None
        if minutes not in SLOT_MINUTES:
            raise Invalid(f"slots.{number}: a slot lasts one of {SLOT_MINUTES} minutes")
        end = start + timedelta(minutes=minutes)
        slots.append({"start": start.isoformat(), "end": end.isoformat()})
    return slots


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        value = list(value.values())
    return isinstance(value, list) and any(_holds_nul(v) for v in value)


def body_from_form(form: FormData) -> ActionBody:
    """The JSON API's body from a page's form; a 422 names the field that is wrong."""
    values: dict[str, Any] = {"action": form_text(form, "action")}
    for name in (
        "reason",
        "note",
        "comment",
        "location",
        "mode",
        "outcome",
        "agreement_type",
        "title",
        "description",
        "start",
        "timezone",
        "satisfaction",
        "recommend",
    ):
        if value := form_text(form, name):
            values[name] = value
    ids = [v for v in form.getlist("organisation_ids") if isinstance(v, str) and v]
    if ids:
        values["organisation_ids"] = ids
    if slots := _slots_from_form(form):
        values["slots"] = slots
    for name, value in values.items():
        # PostgreSQL text cannot hold NUL: refused before the workflow takes the decision, or an
        # amendment would be accepted there and then fail to be written here.
        if _holds_nul(value):
            raise Invalid(f"{name}: must not contain the NUL character")
    try:
        return ActionBody.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "body"
        raise Invalid(f"{where}: {error['msg']}") from None


def link_view(
    *, token: str, link: Link, described: dict[str, Any], language: str, csrf: str
) -> LinkView:
    exchange = described["exchange"]
    viewer_zone = link.timezone
    proposal_zone = described.get("proposal_timezone") or viewer_zone
    slots = []
    for slot in described.get("proposed_slots") or []:
        start, end = datetime.fromisoformat(slot["start"]), datetime.fromisoformat(slot["end"])
        slots.append(
            SlotView(
                start=slot["start"],
                yours=format_span(start, end, zone=viewer_zone, language=language),
                theirs=format_span(start, end, zone=proposal_zone, language=language),
            )
        )
    subject = described.get("subject_organisation")
    kind = str(described["kind"])
    if kind not in HEADINGS:
        kind = "view"
    requester = str(exchange["requester_organisation"]) or translate(language, A_MEMBER)
    proposed_by = described.get("proposed_by")
    return LinkView(
        token=token,
        kind=kind,
        heading=translate(language, HEADINGS[kind]),
        lead=translate(
            language,
            LEADS[kind],
            requester=requester,
            cluster=str(exchange["home_cluster"]),
            subject=str(subject["name"]) if subject else "",
        ),
        allowed=tuple(described["allowed_actions"]),
        title=str(exchange["title"]),
        summary=str(exchange["summary"]),
        requester=requester,
        home_cluster=str(exchange["home_cluster"]),
        cooperation=label(language, CooperationType, str(exchange["cooperation_type"])),
        stage=label(language, Stage, str(exchange["stage"])),
        outcome=label(language, Outcome, link.exchange.outcome) if link.exchange.outcome else None,
        subject=str(subject["name"]) if subject else None,
        candidates=[
            CandidateView(
                organisation_id=str(c["organisation_id"]),
                name=str(c["name"]),
                cluster=str(c["cluster"]),
                reasons=[str(r) for r in c["reasons"]],
            )
            for c in described.get("candidates") or []
        ],
        slots=slots,
        proposed_by=(
            translate(language, PROPOSED_BY[proposed_by], zone=described.get("proposal_timezone"))
            if proposed_by in PROPOSED_BY
            else None
        ),
        same_zone=proposal_zone == viewer_zone,
        timezone=viewer_zone,
        zones=zone_choices(viewer_zone, described.get("proposal_timezone")),
        expires=format_datetime(link.token.expires_at, zone=viewer_zone, language=language),
        csrf=csrf,
    )


@dataclass(frozen=True)
class FormProblem:
    field: str | None
    message: str


def _problem(language: str, message: str) -> FormProblem:
    name = message.split(":", 1)[0].split(".", 1)[0]
    field = FIELD_LABELS.get(name)
    return FormProblem(field=translate(language, field) if field else None, message=message)


def _form_values(form: FormData | None) -> dict[str, list[str]]:
    if form is None:
        return {}
    return {name: [v for v in form.getlist(name) if isinstance(v, str)] for name in form}


async def _link_page(
    request: Request,
    *,
    token: str,
    link: Link,
    engine: Engine,
    client: Client,
    settings: Settings,
    status_code: int = 200,
    problem: FormProblem | None = None,
    form: FormData | None = None,
) -> HTMLResponse:
    language = page_language(request)
    described = await describe_link(engine=engine, client=client, link=link, settings=settings)
    view = link_view(
        token=token,
        link=link,
        described=described,
        language=language,
        csrf=csrf_value(settings=settings, token_hash=link.token.token_hash),
    )
    posted = form_text(form, "action") if form is not None else None
    values = _form_values(form)

    def value(action: str, name: str, default: str = "") -> str:
        """What the recipient typed, when the form comes back to them with a problem."""
        return values.get(name, [default])[0] if posted == action else default

    def chosen(action: str, name: str) -> list[str]:
        return values.get(name, []) if posted == action else []

    return render_page(
        request,
        "action/page.html",
        {
            "view": view,
            "problem": problem,
            "value": value,
            "chosen": chosen,
            "limits": {"note": NOTE_MAX, "title": TITLE_MAX, "description": DESCRIPTION_MAX},
            "max_slots": MAX_SLOTS,
            "slot_minutes": SLOT_MINUTES,
            "default_slot_minutes": DEFAULT_SLOT_MINUTES,
            "survey_outcomes": options(language, SurveyOutcome),
            "wave_outcomes": options(language, WaveOutcome),
            "meeting_modes": options(language, MeetingMode),
            "agreement_types": options(language, CooperationType),
        },
        language=language,
        status_code=status_code,
    )


@router.get(PAGE_PREFIX + "{token}", name="action_page")
async def show_action_page(
    request: Request,
    token: str,
    link: PageLink,
    engine: EngineDep,
    client: TemporalDep,
    settings: SettingsDep,
) -> HTMLResponse:
    # Shows, never acts: mail scanners and link previews fetch this URL on their own.
    return await _link_page(
        request, token=token, link=link, engine=engine, client=client, settings=settings
    )


@router.post(PAGE_PREFIX + "{token}", name="action_submit")
async def submit_action_page(
    request: Request,
    token: str,
    link: PageLink,
    engine: EngineDep,
    client: TemporalDep,
    settings: SettingsDep,
) -> HTMLResponse:
    language = page_language(request)
    async with request.form(max_files=0, max_fields=64) as form:
        _check_csrf(form=form, link=link, settings=settings)
        try:
            body = body_from_form(form)
            await act_on_link(engine=engine, client=client, settings=settings, link=link, body=body)
        except Invalid as exc:
            # Refused before the workflow took anything: nothing of this request is kept.
            return await _link_page(
                request,
                token=token,
                link=link,
                engine=engine,
                client=client,
                settings=settings,
                status_code=exc.status_code,
                problem=_problem(language, exc.message),
                form=form,
            )
    return render_page(
        request,
        "action/done.html",
        {
            "message": translate(language, DONE_MESSAGES[body.action]),
            "title": link.exchange.title,
        },
        language=language,
    )
