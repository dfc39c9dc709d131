"""The exchange pages: the list (mine, my cluster's, all, by role), the request form, and the
exchange page with the actions its stage allows this visitor. Every decision goes through the
JSON API's handler, so each rule is written once; forms are parsed into the same bodies."""

import inspect
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy import Engine, or_
from sqlmodel import Session, col, func, select
from starlette.datastructures import FormData
from temporalio.client import Client

from api.deps import DecisionLimit, EngineDep, SettingsDep, get_temporal
from api.routes.exchanges import (
    amend_exchange,
    answer_survey,
    cancel_exchange,
    create_exchange,
    pick_slot,
    propose_slots,
    report_not_held,
    withdraw_exchange,
)
from api.templating import DEFAULT_SLOT_MINUTES, SLOT_MINUTES, options, zone_choices
from api.web.forms import form_text
from api.web.reports import READERS, ScopeQuery, figure_words, read_scope
from api.web.visitor import SignedInDep, Visitor, checked_form, page, redirect, require_role
from ce4big.db import run_in_session
from ce4big.decisions import query_state
from ce4big.domain import (
    CERTIFICATIONS,
    CLUSTERS,
    CLUSTERS_BY_ID,
    CooperationType,
    MeetingFormat,
    MeetingMode,
    OrganisationKind,
    Outcome,
    Role,
    Stage,
    SurveyOutcome,
    cluster_name,
)
from ce4big.errors import AppError, Conflict, Forbidden, Invalid, Unavailable
from ce4big.exchanges import CandidateFacts, disclosure_for, workflow_id_for
from ce4big.i18n import N_, format_span, label, translate, translations
from ce4big.models import (
    DESCRIPTION_MAX,
    NOTE_MAX,
    TITLE_MAX,
    Exchange,
    ExchangeCandidate,
    ExchangeCreate,
    ExchangeEvent,
    ExchangeStage,
    Organisation,
    TimelineEntry,
    User,
    as_utc,
    utcnow,
)
from ce4big.reports import Figure, figure_exchanges
from ce4big.schemas import (
    MAX_SLOTS,
    ExchangeAmend,
    PickBody,
    ProposalBody,
    ReasonBody,
    SurveyBody,
    known_id,
)
from ce4big.settings import Settings
from ce4big.visibility import visible_exchange, visible_exchanges

router = APIRouter(include_in_schema=False)
B = TypeVar("B", bound=BaseModel)

PAGE_SIZE = 25
# The lifecycle's stages in order, for the stepper.
STEPS = (
    Stage.VETTING,
    Stage.CHANGES_REQUESTED,
    Stage.MATCHING,
    Stage.HOST_REVIEW,
    Stage.INTRODUCTION,
    Stage.SCHEDULING,
    Stage.MEETING_SCHEDULED,
    Stage.FOLLOW_UP,
    Stage.CLOSED,
)

FIELD_LABELS: dict[str, str] = {
    "title": N_("Title"),
    "description": N_("Description"),
    "cooperation_type": N_("Type of cooperation"),
    "partner_kinds": N_("Kinds of partner"),
    "required_certifications": N_("Required certifications"),
    "target_clusters": N_("Clusters to search"),
    "meeting_format": N_("Meeting format"),
    "languages": N_("Languages of the meeting"),
    "note": N_("Note to your broker (optional)"),
    "slots": N_("Meeting slots"),
    "timezone": N_("Time zone"),
    "mode": N_("Format"),
    "location": N_("Place or video link (optional)"),
    "start": N_("Slot"),
    "slot_start": N_("Start"),
    "slot_minutes": N_("Duration"),
    "reason": N_("Reason"),
    "outcome": N_("How did the meeting go?"),
    "satisfaction": N_("How satisfied are you? (1 = not at all, 5 = very)"),
    "recommend": N_("Would you recommend the programme? (0 = never, 10 = certainly)"),
    "comment": N_("Comment (optional)"),
    "created_from": N_("Created from"),
    "created_to": N_("Created until"),
}
# `?done=` after an action: what the notice on the exchange page says.
NOTICES: dict[str, str] = {
    "created": N_("Your request was sent to your cluster's broker for vetting."),
    "amended": N_("Your amended request went back to your cluster for vetting."),
    "slots_proposed": N_("Your slots were sent to the partner, who will pick one."),
    "slot_picked": N_("The meeting is confirmed. An invitation is on its way to both sides."),
    "not_held": N_("Thank you: the meeting is recorded as not held, and scheduling opens again."),
    "survey": N_("Your answers are recorded. Thank you."),
    "withdrawn": N_("You withdrew the request. Whoever was contacted is told."),
    "cancelled": N_("The exchange is cancelled. Whoever was contacted is told."),
}
# The timeline's words for each kind of event; kinds missing here are shown plainly.
EVENT_TEXTS: dict[str, str] = {
    "submitted": N_("Request submitted"),
    "vetting_approve": N_("Approved by the cluster"),
    "vetting_reject": N_("Rejected by the cluster"),
    "vetting_request_changes": N_("The cluster asked for changes"),
    "amended": N_("Request amended"),
    "candidates_found": N_("Candidates found"),
    "shortlisted": N_("Shortlist set"),
    "host_review_done": N_("Review by the partners' clusters done"),
    "introduction_accepted": N_("A partner accepted the introduction"),
    "introduction_declined": N_("A candidate declined the introduction"),
    "introduction_no_answer": N_("A candidate did not answer in time"),
    "slots_proposed": N_("Meeting slots proposed"),
    "meeting_scheduled": N_("Meeting scheduled"),
    "meeting_held": N_("Meeting held"),
    "meeting_cancelled": N_("Meeting cancelled"),
    "reschedule_requested": N_("A new meeting time was asked for"),
    "meeting_not_held": N_("Reported: the meeting did not take place"),
    "survey_answered": N_("Survey answered"),
    "survey_closed": N_("Survey closed"),
    "closed": N_("Closed"),
    "email_failed": N_("An e-mail could not be sent"),
}
# What an SME never sees on its own exchange: who else was considered, and how.
STAFF_ONLY_EVENTS = frozenset(
    {
        "candidates_found",
        "shortlisted",
        "host_review_done",
        "introduction_declined",
        "introduction_no_answer",
        "email_failed",
    }
)
# How far each candidate got, for staff.
CANDIDATE_WORDS: dict[str, str] = {
    "pending": N_("pending"),
    "endorsed": N_("endorsed"),
    "vetoed": N_("vetoed"),
    "consented": N_("consented (no answer)"),
    "asked": N_("asked"),
    "accepted": N_("accepted"),
    "declined": N_("declined"),
    "no_answer": N_("no answer"),
    "withdrawn": N_("withdrawn"),
}
# Slot errors of the core (English, for the API) as the form says them.
SLOT_PROBLEMS: dict[str, str] = {
    "the end must come after the start": N_("The end must come after the start."),
    "a slot lasts at most": N_("A slot lasts 8 hours at most."),
    "the start must be in the future": N_("The start must be in the future."),
    "the start must be within": N_("The start is too far ahead: choose a nearer date."),
    "two slots start at the same time": N_("Two slots start at the same time."),
}


# ---------------------------------------------------------------- forms and their problems


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing to correct: `field` names the form's field (None: the form as a whole)."""

    field: str | None
    message: str


@dataclass
class FormState:
    """A form as it comes back to its sender: what they typed and what to correct."""

    name: str = ""
    values: dict[str, list[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def value(self, name: str, default: str = "") -> str:
        found = self.values.get(name)
        return found[0] if found else default

    def chosen(self, name: str, default: Sequence[str] = ()) -> list[str]:
        return self.values.get(name, list(default))

    def error(self, name: str) -> str | None:
        return next((p.message for p in self.problems if p.field == name), None)


def _form_values(form: FormData) -> dict[str, list[str]]:
    return {
        name: [v for v in form.getlist(name) if isinstance(v, str)]
        for name in form
        if name != "csrf_token"
    }


def _pydantic_message(language: str, error: ErrorDetails) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    ngettext = translations(language).ngettext
    if kind == "missing":
        return translate(language, N_("Fill in this field."))
    if kind == "string_too_short":
        count = int(context.get("min_length", 1))
        text = ngettext(
            "Write at least %(num)d character.", "Write at least %(num)d characters.", count
        )
        return text % {"num": count}
    if kind == "string_too_long":
        count = int(context.get("max_length", 1))
        text = ngettext(
            "Write at most %(num)d character.", "Write at most %(num)d characters.", count
        )
        return text % {"num": count}
    if kind == "too_short":
        return translate(language, N_("Choose at least one."))
    if kind == "too_long":
        count = int(context.get("max_length", 1))
        return ngettext("Choose at most %(num)d.", "Choose at most %(num)d.", count) % {
            "num": count
        }
    if kind.startswith(("datetime", "date")):
        return translate(language, N_("Enter a date and time."))
    if kind.startswith(("int", "greater_than", "less_than")):
        return translate(language, N_("Choose a value from the scale."))
    return translate(language, N_("Choose from the options shown."))


def _validation_problems(language: str, exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors():
        location = [str(p) for p in error["loc"]]
        name = location[0] if location else None
        if name == "slots":
            number = location[1] if len(location) > 1 and location[1].isdigit() else "0"
            name = f"slot_start_{number}"
        if any(p.field == name for p in problems):
            continue
        problems.append(Problem(name, _pydantic_message(language, error)))
    return problems


def _app_error_problem(language: str, exc: AppError) -> Problem:
    """A refusal of the core or the workflow, pinned to the field its message names."""
    where, _, text = exc.message.partition(":")
    name = where.strip() if text else None
    if name and name.startswith("slots."):
        name = "slot_start_" + name.split(".", 1)[1]
    elif name == "slots" or name not in FIELD_LABELS:
        name = "slot_start_0" if name == "slots" else None
    for english, message in SLOT_PROBLEMS.items():
        if english in exc.message:
            return Problem(name, translate(language, message))
    if "another cluster than your own" in exc.message:
        return Problem(name, translate(language, N_("Choose at least one cluster besides yours.")))
    if isinstance(exc, Conflict):
        return Problem(
            None,
            translate(
                language,
                N_("This step is no longer open: the exchange has moved on. Nothing was recorded."),
            ),
        )
    return Problem(name, translate(language, N_("Please check this value.")))


def _user_zone(user: User | None) -> str:
    if user is None:
        return "UTC"
    cluster = CLUSTERS_BY_ID.get(user.cluster_id or "")
    return user.timezone or (cluster.timezone if cluster else "UTC")


def _waiting_words(language: str, waiting_on: Sequence[str], *, for_sme: bool) -> list[str]:
    words: list[str] = []
    for who in waiting_on:
        kind, _, detail = who.partition(":")
        if kind == "requester":
            text = translate(language, N_("the requester"))
        elif kind == "partner":
            text = translate(language, N_("the partner"))
        elif kind in ("home_broker", "home_brokers"):
            text = translate(language, N_("the home cluster's broker"))
        elif kind in ("host_broker", "host_brokers"):
            # An SME, or the host broker of another cluster, is not told in which clusters the
            # candidates are.
            text = (
                translate(language, N_("the partners' clusters"))
                if for_sme or not detail
                else translate(
                    language, N_("the host broker of %(cluster)s"), cluster=cluster_name(detail)
                )
            )
        else:
            text = who.replace("_", " ")
        if text not in words:
            words.append(text)
    return words


def _require_requester(visitor: Visitor, exchange: Exchange) -> User:
    user = require_role(visitor, Role.SME)
    if user.id != exchange.requester_id:
        raise Forbidden("only the requester of this exchange does this")
    return user


# ---------------------------------------------------------------- the list


@dataclass
class Filters:
    stage: str = ""
    home: str = ""
    partner: str = ""
    overdue: bool = False
    created_from: date | None = None
    created_to: date | None = None
    page: int = 1
    # From a figure of the reports: the exchanges it counts, in the report's scope.
    figure: Figure | None = None
    report: ScopeQuery | None = None
    typed: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def query(self, page_number: int | None = None) -> str:
        values = {k: v for k, v in self.typed.items() if v}
        if page_number is not None and page_number > 1:
            values["page"] = str(page_number)
        return urlencode(values)


def _date(filters: Filters, name: str, language: str) -> date | None:
    text = filters.typed.get(name, "")
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        filters.problems.append(
            Problem(name, translate(language, N_("Enter a date like 2026-03-31.")))
        )
        return None


def _filters(request: Request, visitor: Visitor) -> Filters:
    """Lenient: a value that is not one of the options is no filter at all."""
    params = request.query_params
    typed = {
        name: params.get(name, "").strip()[:40]
        for name in ("stage", "home", "partner", "overdue", "created_from", "created_to")
    }
    filters = Filters(typed=typed)
    if typed["stage"] in set(Stage):
        filters.stage = typed["stage"]
    else:
        typed["stage"] = ""
    if typed["home"] in CLUSTERS_BY_ID:
        filters.home = typed["home"]
    else:
        typed["home"] = ""
    # Where candidates are is not an SME's business.
    if typed["partner"] in CLUSTERS_BY_ID and not visitor.has_role(Role.SME):
        filters.partner = typed["partner"]
    else:
        typed["partner"] = ""
    filters.overdue = typed["overdue"] == "1"
    typed["overdue"] = "1" if filters.overdue else ""
    filters.created_from = _date(filters, "created_from", visitor.language)
    filters.created_to = _date(filters, "created_to", visitor.language)
    figure = Figure.parse(params.get("figure", "")[:80])
    user = visitor.user
    if figure is not None and user is not None and user.role in READERS:
        filters.figure = figure
        filters.report = read_scope(params, user, today=utcnow().date())
        typed.update(filters.report.typed, figure=str(figure))
    page_text = params.get("page", "1")
    filters.page = min(int(page_text), 10_000) if page_text.isdigit() and page_text != "0" else 1
    return filters


def _local_midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(), tzinfo=ZoneInfo(zone)).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ListRow:
    id: int
    title: str
    home_cluster: str
    stage: str
    outcome: str | None
    waiting_on: list[str]
    since: datetime | None
    deadline: datetime | None
    overdue: bool


def find_exchanges(
    *, session: Session, user: User, filters: Filters, zone: str, now: datetime
) -> tuple[list[ListRow], int]:
    """One page of the exchanges `user` may see, newest first, and how many match in all."""
    query = visible_exchanges(user)
    if filters.stage:
        query = query.where(Exchange.status == filters.stage)
    if filters.home:
        query = query.where(Exchange.home_cluster == filters.home)
    if filters.partner:
        approached = (
            select(ExchangeCandidate.exchange_id)
            .join(Organisation, col(Organisation.id) == ExchangeCandidate.organisation_id)
            .where(
                Organisation.cluster_id == filters.partner,
                or_(
                    col(ExchangeCandidate.shortlist_position).is_not(None),
                    col(ExchangeCandidate.intro_status).is_not(None),
                ),
            )
        )
        query = query.where(col(Exchange.id).in_(approached))
    if filters.figure is not None and filters.report is not None:
        behind = figure_exchanges(user, filters.report.scope, filters.figure)
        query = query.where(col(Exchange.id).in_(behind))
    if filters.overdue:
        late = select(ExchangeStage.exchange_id).where(
            col(ExchangeStage.left_at).is_(None), col(ExchangeStage.deadline_at) <= now
        )
        query = query.where(col(Exchange.id).in_(late))
    if filters.created_from is not None:
        query = query.where(Exchange.created_at >= _local_midnight(filters.created_from, zone))
    if filters.created_to is not None:
        end = _local_midnight(filters.created_to + timedelta(days=1), zone)
        query = query.where(Exchange.created_at < end)
    count = session.exec(select(func.count()).select_from(query.subquery())).one()
    exchanges = session.exec(
        query.order_by(col(Exchange.created_at).desc(), col(Exchange.id).desc())
        .offset((filters.page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    ).all()
    ids = [e.id for e in exchanges]
    spells = {
        s.exchange_id: s
        for s in session.exec(
            select(ExchangeStage)
            .where(col(ExchangeStage.exchange_id).in_(ids), col(ExchangeStage.left_at).is_(None))
            .order_by(col(ExchangeStage.entered_at))
        )
    }
    rows = []
    for exchange in exchanges:
        assert exchange.id is not None
        spell = spells.get(exchange.id)
        deadline = as_utc(spell.deadline_at) if spell else None
        rows.append(
            ListRow(
                id=exchange.id,
                title=exchange.title,
                home_cluster=exchange.home_cluster,
                stage=spell.stage if spell else exchange.status,
                outcome=exchange.outcome,
                waiting_on=list(spell.waiting_on) if spell else [],
                since=as_utc(spell.entered_at) if spell else None,
                deadline=deadline,
                overdue=deadline is not None and deadline <= now,
            )
        )
    return rows, count


@router.get("/exchanges", name="exchanges")
async def exchange_list(
    request: Request, visitor: SignedInDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    user = visitor.user
    assert user is not None
    filters = _filters(request, visitor)
    now = utcnow()
    rows, count = await run_in_session(
        engine,
        lambda session: find_exchanges(
            session=session, user=user, filters=filters, zone=visitor.timezone, now=now
        ),
    )
    pages = max(1, -(-count // PAGE_SIZE))
    language = visitor.language
    for_sme = user.role == Role.SME
    return page(
        request,
        visitor,
        settings,
        "web/exchanges/list.html",
        {
            "rows": rows,
            "count": count,
            "filters": filters,
            "page_number": filters.page,
            "pages": pages,
            "for_sme": for_sme,
            "stages": options(language, Stage),
            "clusters": CLUSTERS,
            "cluster_names": {c.id: c.name for c in CLUSTERS},
            "filters_form": FormState(name="filter", problems=filters.problems),
            "waiting": lambda row: _waiting_words(language, row.waiting_on, for_sme=for_sme),
            "stage_label": lambda value: label(language, Stage, value),
            "outcome_label": lambda value: label(language, Outcome, value),
            "labels": FIELD_LABELS,
            "figure": figure_words(language, filters.figure) if filters.figure else None,
        },
    )


# ---------------------------------------------------------------- the request form

LIST_FIELDS = ("partner_kinds", "required_certifications", "target_clusters", "languages")


def _request_page(
    request: Request,
    visitor: Visitor,
    settings: Settings,
    state: FormState,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    language = visitor.language
    user = visitor.user
    assert user is not None
    return page(
        request,
        visitor,
        settings,
        "web/exchanges/new.html",
        {
            "form": state,
            "labels": FIELD_LABELS,
            "cooperation_types": options(language, CooperationType),
            "kinds": options(language, OrganisationKind),
            "formats": options(language, MeetingFormat),
            "certifications": CERTIFICATIONS,
            "clusters": [c for c in CLUSTERS if c.id != user.cluster_id],
            "limits": {"title": TITLE_MAX, "description": DESCRIPTION_MAX},
        },
        status_code=status_code,
    )


@router.get("/exchanges/new", name="new_exchange")
async def new_exchange(request: Request, visitor: SignedInDep, settings: SettingsDep) -> Response:
    require_role(visitor, Role.SME)
    state = FormState(
        values={
            "idempotency_key": [secrets.token_urlsafe(24)],
            "meeting_format": [MeetingFormat.ANY.value],
            "languages": list(dict.fromkeys(["en", visitor.language])),
        }
    )
    return _request_page(request, visitor, settings, state)


@router.post("/exchanges/new")
async def submit_exchange(
    request: Request, visitor: SignedInDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    form = await checked_form(request, visitor, settings)
    user = require_role(visitor, Role.SME)
    state = FormState(name="new", values=_form_values(form))
    values: dict[str, Any] = {
        name: form_text(form, name)
        for name in ("title", "description", "cooperation_type", "meeting_format")
        if form_text(form, name)
    }
    for name in LIST_FIELDS:
        values[name] = [v for v in form.getlist(name) if isinstance(v, str) and v]
    # A fresh key when the page did not send one: the submit is then not retried safely, but
    # still taken once.
    key = form_text(form, "idempotency_key")[:200] or secrets.token_urlsafe(24)
    state.values["idempotency_key"] = [key]
    try:
        body = ExchangeCreate.model_validate(values)
    except ValidationError as exc:
        state.problems = _validation_problems(visitor.language, exc)
        return _request_page(request, visitor, settings, state, status_code=422)
    try:
        client = await get_temporal(request)
        created = await create_exchange(
            body=body,
            engine=engine,
            settings=settings,
            client=client,
            user=user,
            idempotency_key=key,
        )
    except Invalid as exc:
        state.problems = [_app_error_problem(visitor.language, exc)]
        return _request_page(request, visitor, settings, state, status_code=422)
    except Unavailable:
        # Nothing was kept (see create_exchange): the form comes back as typed, to send again.
        state.problems = [
            Problem(None, translate(visitor.language, message))
            for message in (
                N_("The service is busy"),
                N_("Nothing was recorded. Please try again in a minute."),
            )
        ]
        return _request_page(request, visitor, settings, state, status_code=503)
    return redirect(f"/exchanges/{created.id}?done=created")


# ---------------------------------------------------------------- the exchange page


@dataclass
class ExchangeFacts:
    """What SQL holds on one exchange; shaped per role by `exchange_view`."""

    exchange: Exchange
    requester: User | None
    organisation: Organisation | None
    events: list[ExchangeEvent]
    spells: list[ExchangeStage]
    candidates: list[tuple[ExchangeCandidate, Organisation]]
    partner: Organisation | None


def load_exchange(*, session: Session, user: User, exchange_id: int) -> ExchangeFacts:
    exchange = visible_exchange(
        session=session, user=user, exchange_id=known_id(exchange_id, "exchange")
    )
    events = session.exec(
        select(ExchangeEvent)
        .where(ExchangeEvent.exchange_id == exchange_id)
        .order_by(col(ExchangeEvent.at), col(ExchangeEvent.id))
    ).all()
    spells = session.exec(
        select(ExchangeStage)
        .where(ExchangeStage.exchange_id == exchange_id)
        .order_by(col(ExchangeStage.entered_at), col(ExchangeStage.id))
    ).all()
    candidates = session.exec(
        select(ExchangeCandidate, Organisation)
        .join(Organisation, col(Organisation.id) == ExchangeCandidate.organisation_id)
        .where(ExchangeCandidate.exchange_id == exchange_id)
        .order_by(col(ExchangeCandidate.rank), col(ExchangeCandidate.organisation_id))
    ).all()
    partner = next((o for c, o in candidates if c.intro_status == "accepted"), None)
    return ExchangeFacts(
        exchange=exchange,
        requester=session.get(User, exchange.requester_id),
        organisation=(
            session.get(Organisation, exchange.organisation_id)
            if exchange.organisation_id
            else None
        ),
        events=list(events),
        spells=list(spells),
        candidates=[(c, o) for c, o in candidates],
        partner=partner,
    )


async def _visible_exchange(engine: Engine, visitor: Visitor, exchange_id: int) -> Exchange:
    user = visitor.user
    assert user is not None
    return await run_in_session(
        engine,
        lambda session: visible_exchange(
            session=session, user=user, exchange_id=known_id(exchange_id, "exchange")
        ),
    )


@dataclass(frozen=True, slots=True)
class Step:
    label: str
    current: bool
    done: bool


@dataclass(frozen=True, slots=True)
class TimelineItem:
    at: datetime
    text: str
    note: str
    actor: str


@dataclass(frozen=True, slots=True)
class Moment:
    """A slot or a meeting: the ISO start the form sends back, and how each side reads it."""

    start: str
    yours: str
    others: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class CandidateRow:
    name: str
    cluster: str
    shortlist_position: int | None
    host_decision: str | None
    intro_status: str | None


@dataclass
class ExchangeView:
    exchange: Exchange
    requester_organisation: str
    stage: Stage
    outcome: str | None
    steps: list[Step]
    waiting: list[str]
    since: datetime | None
    deadline: datetime | None
    overdue: bool
    timeline: list[TimelineItem]
    facts: list[tuple[str, str]]
    actions: set[str]
    links: list[tuple[str, str]]
    partner: Organisation | None
    candidates: list[CandidateRow]
    meeting: Moment | None
    meeting_mode: str
    meeting_location: str
    proposal: list[Moment]
    proposal_by: str | None
    is_requester: bool


NOTE_EVENTS = frozenset(
    {
        "vetting_approve",
        "vetting_reject",
        "vetting_request_changes",
        "amended",
        "closed",
        "meeting_not_held",
    }
)
SLOTS_BY = {
    "requester": N_("Meeting slots proposed by the requester"),
    "partner": N_("Meeting slots proposed by the partner"),
}


def _event_text(language: str, event: TimelineEntry) -> str:
    detail = event.detail or {}
    if event.kind == "stage_entered":
        stage = label(language, Stage, str(detail.get("stage", "")))
        return translate(language, N_("Moved on to: %(stage)s"), stage=stage)
    if event.kind == "closed" and detail.get("outcome"):
        outcome = label(language, Outcome, str(detail["outcome"]))
        return translate(language, N_("Closed: %(outcome)s"), outcome=outcome)
    if event.kind == "slots_proposed" and detail.get("by") in SLOTS_BY:
        return translate(language, SLOTS_BY[str(detail["by"])])
    message = EVENT_TEXTS.get(event.kind)
    return translate(language, message) if message else event.kind.replace("_", " ")


def _timeline(
    language: str, events: Sequence[TimelineEntry], *, for_sme: bool
) -> list[TimelineItem]:
    items = []
    for event in events:
        if for_sme and event.kind in STAFF_ONLY_EVENTS:
            continue
        # The stepper shows the stages; the timeline keeps the decisions readable.
        if event.kind == "stage_entered" and for_sme:
            continue
        detail = event.detail or {}
        note = str(detail.get("note") or detail.get("reason") or "")
        at = as_utc(event.at)
        assert at is not None
        items.append(
            TimelineItem(
                at=at,
                text=_event_text(language, event),
                note=note if event.kind in NOTE_EVENTS else "",
                actor="" if for_sme or event.actor == "system" else event.actor,
            )
        )
    items.reverse()
    return items


def _steps(language: str, current: Stage, outcome: str | None, visited: set[str]) -> list[Step]:
    steps = []
    index = STEPS.index(current)
    for position, stage in enumerate(STEPS):
        if stage == Stage.CHANGES_REQUESTED and stage not in visited and stage != current:
            continue
        text = label(language, Stage, stage)
        if stage == Stage.CLOSED and current == Stage.CLOSED and outcome:
            text = f"{text}: {label(language, Outcome, outcome)}"
        steps.append(
            Step(
                label=text,
                current=stage == current,
                done=stage != current and stage in visited and position < index,
            )
        )
    return steps


def _moment(
    language: str, start: datetime, end: datetime, viewer_zone: str, others: list[tuple[str, str]]
) -> Moment:
    shown = [
        (translate(language, who), format_span(start, end, zone=zone, language=language))
        for who, zone in others
        if zone != viewer_zone
    ]
    return Moment(
        start=start.isoformat(),
        yours=format_span(start, end, zone=viewer_zone, language=language),
        others=shown,
    )


def _parse_time(value: object) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def exchange_view(
    *,
    facts: ExchangeFacts,
    visitor: Visitor,
    state: dict[str, Any] | None,
    now: datetime,
) -> ExchangeView:
    """The exchange as this visitor may see it (`ce4big.exchanges.Disclosure`): an SME sees
    nothing of the candidates, their clusters' reviews or any partner before one accepted
    (double opt-in); the host broker of a cluster sees its own cluster's candidates only."""
    user = visitor.user
    assert user is not None
    language = visitor.language
    exchange = facts.exchange
    for_sme = user.role == Role.SME
    is_requester = for_sme and user.id == exchange.requester_id
    seen = disclosure_for(
        user=user,
        exchange=exchange,
        candidates=[
            CandidateFacts(o.id, o.cluster_id, o.contact_email, c.intro_status == "accepted")
            for c, o in facts.candidates
        ],
        state=state,
    )
    state = seen.state(state)
    open_spell = next((s for s in reversed(facts.spells) if s.left_at is None), None)
    stage = Stage(open_spell.stage if open_spell else exchange.status)
    waiting_on = seen.waiting_on(open_spell.waiting_on) if open_spell else []
    since = as_utc(open_spell.entered_at) if open_spell else None
    deadline = as_utc(open_spell.deadline_at) if open_spell else None
    # The workflow answers first-hand; SQL records each step a moment later.
    live = state if state and state.get("stage") in set(Stage) else None
    if live is not None:
        stage = Stage(live["stage"])
        waiting_on = [str(w) for w in live.get("waiting_on") or []]
        since = _parse_time(live.get("since")) or since
        deadline = _parse_time(live.get("deadline")) if live.get("deadline") else None
    visited = {str(s.stage) for s in facts.spells} | {
        str(e.detail.get("stage")) for e in facts.events if e.kind == "stage_entered"
    }

    requester_zone = _user_zone(facts.requester)
    partner = facts.partner if facts.partner and seen.sees(facts.partner.id) else None
    partner_cluster = CLUSTERS_BY_ID.get(partner.cluster_id) if partner else None
    zones: list[tuple[str, str]] = []
    if not is_requester:
        zones.append((N_("Requester's time"), requester_zone))
    if partner_cluster is not None:
        zones.append((N_("Partner's time"), partner_cluster.timezone))

    proposal: list[Moment] = []
    proposal_by = None
    if live and stage == Stage.SCHEDULING and live.get("proposal"):
        proposed = live["proposal"]
        proposal_by = str(proposed.get("by") or "")
        for slot in proposed.get("slots") or []:
            start, end = _parse_time(slot.get("start")), _parse_time(slot.get("end"))
            if start and end:
                proposal.append(_moment(language, start, end, visitor.timezone, zones))
    meeting = None
    mode = location = ""
    if stage in (Stage.MEETING_SCHEDULED, Stage.FOLLOW_UP) and partner is not None:
        held = (live or {}).get("meeting") or next(
            (e.detail for e in reversed(facts.events) if e.kind == "meeting_scheduled"), None
        )
        if held:
            start, end = _parse_time(held.get("start")), _parse_time(held.get("end"))
            if start and end:
                meeting = _moment(language, start, end, visitor.timezone, zones)
            if held.get("mode"):
                mode = label(language, MeetingMode, str(held["mode"]))
            location = str(held.get("location") or "")

    actions: set[str] = set()
    if is_requester and stage != Stage.CLOSED:
        actions.add("withdraw")
        if stage == Stage.CHANGES_REQUESTED:
            actions.add("amend")
        if stage == Stage.SCHEDULING and "requester" in waiting_on:
            actions.add("propose")
            if proposal and proposal_by == "partner":
                actions.add("pick")
        if stage == Stage.FOLLOW_UP:
            actions.add("not_held")
            if "requester" in waiting_on:
                actions.add("survey")
    if user.role in (Role.MANAGER, Role.ADMIN) and stage != Stage.CLOSED:
        actions.add("cancel")

    links: list[tuple[str, str]] = []
    if user.role == Role.BROKER:
        home = user.cluster_id == exchange.home_cluster
        if home and stage == Stage.VETTING:
            links.append((f"/exchanges/{exchange.id}/vet", N_("Vet this request")))
        if home and stage == Stage.MATCHING:
            links.append((f"/exchanges/{exchange.id}/shortlist", N_("Build the shortlist")))
        pending_here = any(
            c.shortlist_position is not None
            and c.host_decision in (None, "pending")
            and o.cluster_id == user.cluster_id
            for c, o in facts.candidates
        )
        if stage == Stage.HOST_REVIEW and pending_here:
            links.append((f"/exchanges/{exchange.id}/host-review", N_("Review the introduction")))

    facts_list = [
        (N_("Home cluster"), cluster_name(exchange.home_cluster)),
        (N_("Type of cooperation"), label(language, CooperationType, exchange.cooperation_type)),
        (
            N_("Kinds of partner"),
            ", ".join(label(language, OrganisationKind, k) for k in exchange.partner_kinds),
        ),
        (N_("Required certifications"), ", ".join(exchange.required_certifications)),
        (
            N_("Clusters to search"),
            ", ".join(cluster_name(c) for c in exchange.target_clusters),
        ),
        (N_("Meeting format"), label(language, MeetingFormat, exchange.meeting_format)),
        (N_("Languages of the meeting"), ", ".join(str(x).upper() for x in exchange.languages)),
    ]
    return ExchangeView(
        exchange=exchange,
        requester_organisation=facts.organisation.name if facts.organisation else "",
        stage=stage,
        outcome=exchange.outcome,
        steps=_steps(language, stage, exchange.outcome, visited),
        waiting=_waiting_words(language, waiting_on, for_sme=for_sme),
        since=since,
        deadline=deadline,
        overdue=deadline is not None and deadline <= now,
        timeline=_timeline(language, seen.events(facts.events), for_sme=for_sme),
        facts=[(translate(language, name), value) for name, value in facts_list if value],
        actions=actions,
        links=[(href, translate(language, text)) for href, text in links],
        partner=partner,
        candidates=[]
        if for_sme
        else [
            CandidateRow(
                name=o.name,
                cluster=cluster_name(o.cluster_id),
                shortlist_position=c.shortlist_position,
                host_decision=c.host_decision,
                intro_status=c.intro_status,
            )
            for c, o in facts.candidates
            if seen.sees(o.id)
        ],
        meeting=meeting,
        meeting_mode=mode,
        meeting_location=location,
        proposal=proposal,
        proposal_by=proposal_by,
        is_requester=is_requester,
    )


async def _live_state(request: Request, exchange_id: int) -> dict[str, Any] | None:
    """The workflow's answer, or None: the page still shows what SQL holds."""
    try:
        client = await get_temporal(request)
    except Unavailable:
        return None
    settings: Settings = request.app.state.settings
    return await query_state(
        client=client,
        workflow_id=workflow_id_for(exchange_id),
        wait_seconds=settings.temporal_timeout_seconds,
    )


async def _exchange_page(
    request: Request,
    visitor: Visitor,
    engine: Engine,
    settings: Settings,
    exchange_id: int,
    *,
    form: FormState | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    user = visitor.user
    assert user is not None
    facts = await run_in_session(
        engine, lambda session: load_exchange(session=session, user=user, exchange_id=exchange_id)
    )
    state = await _live_state(request, exchange_id)
    view = exchange_view(facts=facts, visitor=visitor, state=state, now=utcnow())
    language = visitor.language
    exchange = facts.exchange
    form = form or FormState()
    return page(
        request,
        visitor,
        settings,
        "web/exchanges/detail.html",
        {
            "view": view,
            "form": form,
            "blank": FormState(),
            "candidate_words": CANDIDATE_WORDS,
            "cluster_names": {c.id: c.name for c in CLUSTERS},
            "notice": translate(language, NOTICES[notice]) if notice in NOTICES else None,
            "labels": FIELD_LABELS,
            "stage_label": label(language, Stage, view.stage),
            "amend_title": form.value("title", exchange.title)
            if form.name == "amend"
            else exchange.title,
            "amend_description": form.value("description", exchange.description)
            if form.name == "amend"
            else exchange.description,
            "max_slots": MAX_SLOTS,
            "slot_minutes": SLOT_MINUTES,
            "default_slot_minutes": DEFAULT_SLOT_MINUTES,
            "zones": zone_choices(visitor.timezone),
            "modes": options(language, MeetingMode),
            "survey_outcomes": options(language, SurveyOutcome),
            "limits": {"title": TITLE_MAX, "description": DESCRIPTION_MAX, "note": NOTE_MAX},
        },
        status_code=status_code,
    )


@router.get("/exchanges/{exchange_id}", name="exchange")
async def exchange_page(
    request: Request,
    exchange_id: int,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    done = request.query_params.get("done")
    return await _exchange_page(request, visitor, engine, settings, exchange_id, notice=done)


# ---------------------------------------------------------------- the actions


def _reason(form: FormData) -> ReasonBody:
    return ReasonBody.model_validate({"reason": form_text(form, "reason")})


def _amendment(form: FormData) -> ExchangeAmend:
    return ExchangeAmend.model_validate(
        {name: form_text(form, name) for name in ("title", "description", "note")}
    )


def _proposal(form: FormData) -> ProposalBody:
    """Slots as typed in the form: a local date and time in the chosen zone, and a duration."""
    slots: list[dict[str, str]] = []
    problems: list[tuple[int, str]] = []
    for number in range(MAX_SLOTS):
        start_text = form_text(form, f"slot_start_{number}")
        if not start_text:
            continue
        minutes_text = form_text(form, f"slot_minutes_{number}") or str(DEFAULT_SLOT_MINUTES)
        try:
            start = datetime.fromisoformat(start_text).replace(tzinfo=None)
        except ValueError:
            problems.append((number, "datetime"))
            continue
        minutes = int(minutes_text) if minutes_text.isdigit() else 0
        if minutes not in SLOT_MINUTES:
            problems.append((number, "minutes"))
            continue
        end = start + timedelta(minutes=minutes)
        slots.append({"start": start.isoformat(), "end": end.isoformat()})
    if problems:
        raise SlotsUnreadable(problems)
    return ProposalBody.model_validate(
        {
            "slots": slots,
            "timezone": form_text(form, "timezone"),
            "mode": form_text(form, "mode") or MeetingMode.VIDEO.value,
            "location": form_text(form, "location"),
        }
    )


class SlotsUnreadable(Exception):
    def __init__(self, problems: list[tuple[int, str]]) -> None:
        super().__init__("unreadable slots")
        self.problems = problems


def _pick(form: FormData) -> PickBody:
    return PickBody.model_validate({"start": form_text(form, "start")})


def _survey(form: FormData) -> SurveyBody:
    values: dict[str, str] = {
        name: form_text(form, name)
        for name in ("outcome", "satisfaction", "recommend", "comment")
        if form_text(form, name)
    }
    return SurveyBody.model_validate(values)


Renderer = Callable[[FormState, int], Awaitable[HTMLResponse]]


async def _decide(
    request: Request,
    visitor: Visitor,
    engine: Engine,
    settings: Settings,
    exchange_id: int,
    *,
    form_name: str,
    parse: Callable[[FormData], B],
    act: Callable[[B, Exchange, Client, User], Awaitable[object]],
    done: str,
    managers: bool = False,
    render: Renderer | None = None,
) -> Response:
    """One decision from a form: CSRF, who may, the body of the JSON API, its handler; a
    problem re-renders the form with what was typed, a success goes back to the exchange."""
    form = await checked_form(request, visitor, settings)
    exchange = await _visible_exchange(engine, visitor, exchange_id)
    if managers:
        user = require_role(visitor, Role.MANAGER, Role.ADMIN)
    else:
        user = _require_requester(visitor, exchange)
    language = visitor.language
    state = FormState(name=form_name, values=_form_values(form))

    async def again(status_code: int) -> HTMLResponse:
        if render is not None:
            return await render(state, status_code)
        return await _exchange_page(
            request, visitor, engine, settings, exchange_id, form=state, status_code=status_code
        )

    try:
        body = parse(form)
    except ValidationError as exc:
        state.problems = _validation_problems(language, exc)
        return await again(422)
    except SlotsUnreadable as exc:
        state.problems = [
            Problem(
                f"slot_start_{number}" if what == "datetime" else f"slot_minutes_{number}",
                translate(language, N_("Enter a date and time."))
                if what == "datetime"
                else translate(language, N_("Choose a duration from the list.")),
            )
            for number, what in exc.problems
        ]
        return await again(422)
    client = await get_temporal(request)
    try:
        await act(body, exchange, client, user)
    except (Invalid, Conflict) as exc:
        state.problems = [_app_error_problem(language, exc)]
        return await again(exc.status_code)
    return redirect(f"/exchanges/{exchange_id}?done={done}")


@dataclass(frozen=True)
class RequesterAction:
    """A form of the requester's on the exchange page, answered by the JSON API's handler."""

    path: str
    form_name: str
    parse: Callable[[FormData], Any]
    handler: Callable[..., Awaitable[object]]
    done: str


REQUESTER_ACTIONS = (
    RequesterAction("amend", "amend", _amendment, amend_exchange, "amended"),
    RequesterAction("slots", "propose", _proposal, propose_slots, "slots_proposed"),
    RequesterAction("pick", "pick", _pick, pick_slot, "slot_picked"),
    RequesterAction("not-held", "not_held", _reason, report_not_held, "not_held"),
    RequesterAction("survey", "survey", _survey, answer_survey, "survey"),
)


def _add_requester_action(action: RequesterAction) -> None:
    wanted = inspect.signature(action.handler).parameters

    async def route(
        request: Request,
        exchange_id: int,
        visitor: SignedInDep,
        engine: EngineDep,
        settings: SettingsDep,
    ) -> Response:
        # Some handlers also need the engine (amend).
        extra = {
            name: value
            for name, value in (("engine", engine), ("settings", settings))
            if name in wanted
        }

        async def act(body: Any, exchange: Exchange, client: Client, user: User) -> None:
            await action.handler(body=body, exchange=exchange, client=client, user=user, **extra)

        return await _decide(
            request,
            visitor,
            engine,
            settings,
            exchange_id,
            form_name=action.form_name,
            parse=action.parse,
            act=act,
            done=action.done,
        )

    router.add_api_route(
        f"/exchanges/{{exchange_id}}/{action.path}",
        route,
        methods=["POST"],
        name=f"exchange_{action.form_name}",
        dependencies=[DecisionLimit],
    )


for _action in REQUESTER_ACTIONS:
    _add_requester_action(_action)


# ---------------------------------------------------------------- closing, with confirmation

CLOSINGS: dict[str, tuple[str, str, str, str]] = {
    # what: heading, explanation, button, done
    "withdraw": (
        N_("Withdraw this request?"),
        N_(
            "The exchange closes for good. Whoever was contacted about it is told. This cannot "
            "be undone."
        ),
        N_("Withdraw the request"),
        "withdrawn",
    ),
    "cancel": (
        N_("Cancel this exchange?"),
        N_(
            "The exchange closes for good as cancelled. Whoever was contacted about it is told. "
            "This cannot be undone."
        ),
        N_("Cancel the exchange"),
        "cancelled",
    ),
}


async def _closing_page(
    request: Request,
    visitor: Visitor,
    settings: Settings,
    exchange: Exchange,
    what: str,
    state: FormState,
    status_code: int = 200,
) -> HTMLResponse:
    heading, explanation, button, _ = CLOSINGS[what]
    return page(
        request,
        visitor,
        settings,
        "web/exchanges/confirm.html",
        {
            "exchange": exchange,
            "what": what,
            "heading": heading,
            "explanation": explanation,
            "button": button,
            "form": state,
            "labels": FIELD_LABELS,
            "limits": {"note": NOTE_MAX},
        },
        status_code=status_code,
    )


def _closing_allowed(visitor: Visitor, exchange: Exchange, what: str) -> User:
    if what == "withdraw":
        user = _require_requester(visitor, exchange)
    else:
        user = require_role(visitor, Role.MANAGER, Role.ADMIN)
    return user


async def _confirm(
    request: Request,
    visitor: Visitor,
    engine: Engine,
    settings: Settings,
    exchange_id: int,
    what: str,
) -> Response:
    exchange = await _visible_exchange(engine, visitor, exchange_id)
    _closing_allowed(visitor, exchange, what)
    if exchange.status == Stage.CLOSED:
        raise Conflict("the exchange is closed already")
    return await _closing_page(request, visitor, settings, exchange, what, FormState())


async def _close(
    request: Request,
    visitor: Visitor,
    engine: Engine,
    settings: Settings,
    exchange_id: int,
    what: str,
) -> Response:
    async def act(body: ReasonBody, exchange: Exchange, client: Client, user: User) -> None:
        close = withdraw_exchange if what == "withdraw" else cancel_exchange
        await close(exchange=exchange, client=client, settings=settings, user=user, body=body)

    async def render(state: FormState, status_code: int) -> HTMLResponse:
        exchange = await _visible_exchange(engine, visitor, exchange_id)
        return await _closing_page(request, visitor, settings, exchange, what, state, status_code)

    return await _decide(
        request,
        visitor,
        engine,
        settings,
        exchange_id,
        form_name=what,
        parse=_reason,
        act=act,
        done=CLOSINGS[what][3],
        managers=what == "cancel",
        render=render,
    )


@router.get("/exchanges/{exchange_id}/withdraw", name="withdraw_exchange")
async def confirm_withdraw(
    request: Request,
    exchange_id: int,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    return await _confirm(request, visitor, engine, settings, exchange_id, "withdraw")


@router.post("/exchanges/{exchange_id}/withdraw", dependencies=[DecisionLimit])
async def withdraw(
    request: Request,
    exchange_id: int,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    return await _close(request, visitor, engine, settings, exchange_id, "withdraw")


@router.get("/exchanges/{exchange_id}/cancel", name="cancel_exchange")
async def confirm_cancel(
    request: Request,
    exchange_id: int,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    return await _confirm(request, visitor, engine, settings, exchange_id, "cancel")


@router.post("/exchanges/{exchange_id}/cancel", dependencies=[DecisionLimit])
async def cancel(
    request: Request,
    exchange_id: int,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    return await _close(request, visitor, engine, settings, exchange_id, "cancel")
