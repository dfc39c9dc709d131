"""The managers' reports: the dashboard (funnel, time in each stage, work overdue now, home
cluster to partner cluster, outcomes), each chart drawn as SVG on the server beside the table
of its figures, and the printable evidence report for a period. Every count links to the list
of the exchanges behind it (`/exchanges?figure=...`). Brokers see their own cluster's."""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session

from api.deps import EngineDep, SettingsDep
from api.web.visitor import SignedInDep, page, require_role
from ce4big.db import run_in_session
from ce4big.domain import (
    CLUSTERS,
    CooperationType,
    FunnelStep,
    Outcome,
    Party,
    Role,
    Stage,
    SurveyOutcome,
    WaveOutcome,
    cluster_name,
)
from ce4big.i18n import N_, format_day, label, translate
from ce4big.models import User, utcnow
from ce4big.reports import (
    SIDES,
    CompletedExchange,
    Figure,
    FigureKind,
    Funnel,
    MatrixCell,
    Outcomes,
    OverdueItem,
    ReportScope,
    StageTimes,
    WeekCount,
    cluster_matrix,
    completed_exchanges,
    funnel,
    outcomes,
    overdue,
    require_reader,
    stage_times,
    tally,
    weekly_submissions,
)

router = APIRouter(include_in_schema=False)

READERS = (Role.MANAGER, Role.ADMIN, Role.BROKER)
# The query parameters of a report's scope, as the dashboard's form and its links write them.
SCOPE_FIELDS = ("from", "to", "home", "partner", "as_of")
ENTER_A_DATE = N_("Enter a date like 2026-03-31.")


@dataclass
class ScopeQuery:
    """A report's scope as typed in the address: lenient like the list's filters (a cluster
    that is not one is no filter), but a date that is not one is told back."""

    scope: ReportScope
    typed: dict[str, str]
    # (field, English message) for each value to correct.
    problems: list[tuple[str, str]] = field(default_factory=list)

    def query(self, **extra: str) -> str:
        values = {k: v for k, v in self.typed.items() if v}
        values.update({k: v for k, v in extra.items() if v})
        return urlencode(values)

    def figure_href(self, figure: Figure, **scope: str) -> str:
        """The list of the exchanges behind a figure, in this scope (or `scope` over it)."""
        return "/exchanges?" + self.query(**scope, figure=str(figure))


def read_scope(params: Mapping[str, str], user: User, *, today: date) -> ScopeQuery:
    typed = {name: params.get(name, "").strip()[:40] for name in SCOPE_FIELDS}
    problems: list[tuple[str, str]] = []

    def day(name: str) -> date | None:
        if not typed[name]:
            return None
        try:
            return date.fromisoformat(typed[name])
        except ValueError:
            problems.append((name, ENTER_A_DATE))
            return None

    start, end, as_of = day("from"), day("to"), day("as_of")
    if start is not None and end is not None and end < start:
        problems.append(("to", N_("The period ends before it starts.")))
        end = None
    clusters = {c.id for c in CLUSTERS}
    # A broker's reports are their own cluster's: the core scopes them.
    for name in ("home", "partner"):
        if typed[name] not in clusters or (name == "home" and user.role == Role.BROKER):
            typed[name] = ""
    scope = ReportScope(
        as_of=as_of or today,
        start=start,
        end=end,
        home=typed["home"] or None,
        partner=typed["partner"] or None,
    )
    return ScopeQuery(scope=scope, typed=typed, problems=problems)


# ---------------------------------------------------------------- charts


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    text: str
    # From 0 to 1: the bar's length against the longest.
    length: float
    href: str | None = None


def bars(rows: list[tuple[str, float, str, str | None]]) -> list[Bar]:
    """(label, value, the value as written, link) → bars scaled to the largest value."""
    top = max((value for _, value, _, _ in rows), default=0) or 1
    return [
        Bar(label=name, value=value, text=text, length=value / top, href=href)
        for name, value, text, href in rows
    ]


@dataclass(frozen=True, slots=True)
class Sparkline:
    points: str
    width: int
    height: int
    top: int


def sparkline(values: list[int], *, width: int = 600, height: int = 80) -> Sparkline:
    top = max(values, default=0) or 1
    step = width / max(len(values) - 1, 1)
    points = " ".join(
        f"{index * step:.1f},{height - 4 - (value / top) * (height - 8):.1f}"
        for index, value in enumerate(values)
    )
    return Sparkline(points=points, width=width, height=height, top=top)


# ---------------------------------------------------------------- the dashboard


@dataclass(frozen=True, slots=True)
class Figures:
    funnel: Funnel
    stages: StageTimes
    overdue: list[OverdueItem]
    overdue_total: int
    matrix: list[MatrixCell]
    outcomes: Outcomes
    weeks: list[WeekCount]


def _figures(session: Session, user: User, scope: ReportScope, now: datetime) -> Figures:
    late, late_total = overdue(session=session, user=user, scope=scope, now=now)
    # Added up once for the three sections that count facts.
    counted = tally(session=session, user=user, scope=scope)
    return Figures(
        funnel=funnel(session=session, user=user, scope=scope, counted=counted),
        stages=stage_times(session=session, user=user, scope=scope),
        overdue=late,
        overdue_total=late_total,
        matrix=cluster_matrix(session=session, user=user, scope=scope, counted=counted),
        outcomes=outcomes(session=session, user=user, scope=scope, counted=counted),
        weeks=weekly_submissions(session=session, user=user, scope=scope),
    )


def party_words(language: str, waiting_on: list[str]) -> str:
    """ "Host cluster's broker (BioM), Partner": whom a stage waits on, for a manager."""
    words = []
    for who in waiting_on:
        kind, _, detail = who.partition(":")
        kind = kind.removesuffix("s")
        text = label(language, Party, kind)
        if kind == Party.HOST_BROKER and detail:
            text = f"{text} ({cluster_name(detail)})"
        if text not in words:
            words.append(text)
    return ", ".join(words)


FIGURE_WORDS = {
    FigureKind.STEP: N_("Reached the step: %(what)s"),
    FigureKind.SPELL: N_("Stayed in the stage: %(what)s"),
    FigureKind.OUTCOME: N_("Closed as: %(what)s"),
    FigureKind.SURVEY: N_("Survey answer: %(what)s"),
    FigureKind.WAVE: N_("Months later: %(what)s"),
    FigureKind.AGREEMENT: N_("Agreement reached: %(what)s"),
}
SIDE_WORDS = {"requester": N_("the requester"), "partner": N_("the partner")}


def figure_words(language: str, figure: Figure) -> str:
    """What a figure of the reports counts, in words: the heading of the list behind it."""
    value = figure.value
    if figure.kind == FigureKind.SURVEY:
        side, _, answer = value.partition(":")
        what = f"{label(language, SurveyOutcome, answer)} ({translate(language, SIDE_WORDS[side])})"
    else:
        vocabulary: type[StrEnum] = {
            FigureKind.STEP: FunnelStep,
            FigureKind.SPELL: Stage,
            FigureKind.OUTCOME: Outcome,
            FigureKind.WAVE: WaveOutcome,
            FigureKind.AGREEMENT: CooperationType,
        }[figure.kind]
        what = label(language, vocabulary, value)
    return translate(language, FIGURE_WORDS[figure.kind], what=what)


def scope_words(language: str, user: User, scope: ReportScope) -> str:
    """ "Submitted from 1 March 2026 to 31 May 2026 · BioWin → BioM · as of the end of …"."""
    day = partial(format_day, language=language)
    if scope.start and scope.end:
        period = translate(
            language,
            N_("Submitted from %(start)s to %(end)s"),
            start=day(scope.start),
            end=day(scope.end),
        )
    elif scope.start:
        period = translate(language, N_("Submitted from %(start)s"), start=day(scope.start))
    elif scope.end:
        period = translate(language, N_("Submitted until %(end)s"), end=day(scope.end))
    else:
        period = translate(language, N_("All submissions"))
    home = user.cluster_id if user.role == Role.BROKER else scope.home
    clusters = cluster_name(home) if home else translate(language, N_("all clusters"))
    if scope.partner:
        clusters += f" → {cluster_name(scope.partner)}"
    as_of = translate(language, N_("as of the end of %(day)s (UTC)"), day=day(scope.as_of))
    return " · ".join((period, clusters, as_of))


def _charts(language: str, query: ScopeQuery, figures: Figures) -> dict[str, Any]:
    """The dashboard's charts and the links of their figures."""
    steps = figures.funnel.steps
    outcome_figures = figures.outcomes
    return {
        "funnel_bars": bars(
            [
                (
                    label(language, FunnelStep, s.step),
                    s.count,
                    str(s.count),
                    query.figure_href(Figure(FigureKind.STEP, s.step)),
                )
                for s in steps
            ]
        ),
        "stage_bars": bars(
            [
                (label(language, Stage, s.stage), s.median_hours, "", None)
                for s in figures.stages.stages
            ]
        ),
        "waiting_bars": bars(
            [(label(language, Party, w.party), w.share, "", None) for w in figures.stages.waiting]
        ),
        "closed_bars": bars(
            [
                (
                    label(language, Outcome, outcome),
                    count,
                    str(count),
                    query.figure_href(Figure(FigureKind.OUTCOME, outcome)),
                )
                for outcome, count in outcome_figures.closed.items()
            ]
        ),
        "wave_bars": bars(
            [
                (
                    label(language, WaveOutcome, result),
                    count,
                    str(count),
                    query.figure_href(Figure(FigureKind.WAVE, result)),
                )
                for result, count in outcome_figures.wave.items()
            ]
        ),
        "weeks_line": sparkline([w.count for w in figures.weeks]),
    }


def _report_context(
    language: str, user: User, query: ScopeQuery, figures: Figures
) -> dict[str, Any]:
    matrix = {(cell.home, cell.partner): cell for cell in figures.matrix}
    homes = sorted({cell.home for cell in figures.matrix})
    partners = sorted({cell.partner for cell in figures.matrix})

    def href(kind: FigureKind, value: str, **scope: str) -> str:
        return query.figure_href(Figure(kind, value), **scope)

    return {
        "query": query,
        "scope": query.scope,
        "figures": figures,
        "for_broker": user.role == Role.BROKER,
        "scope_words": scope_words(language, user, query.scope),
        "clusters": CLUSTERS,
        "cluster_name": cluster_name,
        "matrix": matrix,
        "matrix_homes": homes,
        "matrix_partners": partners,
        "sides": SIDES,
        "survey_outcomes": list(SurveyOutcome),
        "agreement_types": list(CooperationType),
        "href": href,
        "kinds": FigureKind,
        "steps": FunnelStep,
        "label": lambda vocabulary, value: label(language, vocabulary, value),
        "vocab": {
            "Stage": Stage,
            "Outcome": Outcome,
            "SurveyOutcome": SurveyOutcome,
            "WaveOutcome": WaveOutcome,
            "CooperationType": CooperationType,
            "Party": Party,
            "FunnelStep": FunnelStep,
        },
        "parties": lambda waiting_on: party_words(language, waiting_on),
        "problems": [(name, translate(language, message)) for name, message in query.problems],
        **_charts(language, query, figures),
    }


@router.get("/reports", name="reports")
async def dashboard(
    request: Request, visitor: SignedInDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    user = require_role(visitor, *READERS)
    require_reader(user)
    now = utcnow()
    query = read_scope(request.query_params, user, today=now.date())
    figures = await run_in_session(
        engine, lambda session: _figures(session, user, query.scope, now)
    )
    return page(
        request,
        visitor,
        settings,
        "web/reports/dashboard.html",
        _report_context(visitor.language, user, query, figures),
    )


# ---------------------------------------------------------------- the evidence report


def _default_period(today: date) -> tuple[date, date]:
    """Without a period: the calendar year so far."""
    return date(today.year, 1, 1), today


@router.get("/reports/period", name="period_report")
async def period_report(
    request: Request, visitor: SignedInDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    """The figures of a period as they stood at its end, the completed exchanges with their
    outcomes, and what each figure counts: printable, one section per page."""
    user = require_role(visitor, *READERS)
    now = utcnow()
    params = dict(request.query_params)
    start, end = _default_period(now.date())
    params.setdefault("from", start.isoformat())
    params.setdefault("to", end.isoformat())
    query = read_scope(params, user, today=now.date())
    # The figures stand at the end of the period (for a period still running, that is now).
    scope = query.scope
    if scope.end is not None:
        scope = replace(scope, as_of=scope.end)
    query = replace(query, scope=scope, typed={**query.typed, "as_of": scope.as_of.isoformat()})

    def load(session: Session) -> tuple[Figures, list[CompletedExchange]]:
        return (
            _figures(session, user, scope, now),
            completed_exchanges(session=session, user=user, scope=scope),
        )

    figures, completed = await run_in_session(engine, load)
    return page(
        request,
        visitor,
        settings,
        "web/reports/period.html",
        {
            **_report_context(visitor.language, user, query, figures),
            "completed": completed,
            "generated_at": now,
            "period_days": (
                (scope.end - scope.start + timedelta(days=1)).days
                if scope.start and scope.end
                else None
            ),
        },
    )
