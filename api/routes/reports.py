"""Programme reports as JSON and CSV: the same figures as the managers' pages."""

import csv
import io
from collections.abc import Iterator
from dataclasses import asdict
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, BaseModel
from sqlmodel import Session

from api.deps import CurrentUser, EngineDep, SessionDep
from ce4big.domain import CLUSTER_IDS, FunnelStep, Party, Stage
from ce4big.errors import Invalid
from ce4big.models import utcnow
from ce4big.reports import (
    EXPORT_COLUMNS,
    MatrixCell,
    Outcomes,
    ReportScope,
    cluster_matrix,
    export_rows,
    funnel,
    outcomes,
    require_reader,
    stage_times,
)
from ce4big.schemas import error_responses

router = APIRouter(
    prefix="/reports", tags=["reports"], responses=error_responses(401, 403, 422, 503)
)
# The figures of a day are read up to the start of the next one, which must exist.
DAY_MAX = date(9998, 12, 31)


def _known_day(value: date | None) -> date | None:
    if value is not None and value > DAY_MAX:
        raise ValueError(f"a day up to {DAY_MAX.isoformat()}")
    return value


Day = Annotated[date | None, AfterValidator(_known_day)]


class FunnelStepPublic(BaseModel):
    step: FunnelStep
    count: int
    conversion: float | None


class FunnelPublic(BaseModel):
    as_of: date
    steps: list[FunnelStepPublic]


class StageTimePublic(BaseModel):
    stage: Stage
    spells: int
    median_hours: float
    p90_hours: float


class WaitingSharePublic(BaseModel):
    party: Party
    share: float


class StageTimesPublic(BaseModel):
    as_of: date
    stages: list[StageTimePublic]
    waiting: list[WaitingSharePublic]


def report_scope(
    start: Annotated[Day, Query(alias="from")] = None,
    end: Annotated[Day, Query(alias="to")] = None,
    cluster: Annotated[str | None, Query(max_length=32, description="home cluster")] = None,
    partner: Annotated[str | None, Query(max_length=32, description="partner cluster")] = None,
    as_of: Annotated[Day, Query()] = None,
) -> ReportScope:
    """The period (`from`, `to`: UTC days of submission), the home cluster, the cluster of the
    partner who accepted the introduction, and the day whose end the figures stand at
    (default today)."""
    _period(start, end)
    for name, value in (("cluster", cluster), ("partner", partner)):
        if value is not None and value not in CLUSTER_IDS:
            raise Invalid(f"{name}: {value!r} is not one of {', '.join(sorted(CLUSTER_IDS))}")
    return ReportScope(
        as_of=as_of or utcnow().date(), start=start, end=end, home=cluster, partner=partner
    )


def _period(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and end < start:
        raise Invalid("to: the period ends before it starts")


ReportScopeDep = Annotated[ReportScope, Depends(report_scope)]


@router.get("/funnel")
def read_funnel(session: SessionDep, user: CurrentUser, scope: ReportScopeDep) -> FunnelPublic:
    """Exchanges submitted in the period, counted at each step they had reached by the end of
    `as_of`, with the conversion from the step before. Managers see every cluster (or
    `cluster`); a broker, their own cluster's exchanges."""
    figures = funnel(session=session, user=user, scope=scope)
    return FunnelPublic(
        as_of=figures.as_of, steps=[FunnelStepPublic(**asdict(s)) for s in figures.steps]
    )


@router.get("/stages")
def read_stage_times(
    session: SessionDep, user: CurrentUser, scope: ReportScopeDep
) -> StageTimesPublic:
    """For the exchanges submitted in the period: how long each stage took (median and 90th
    percentile of the spells ended by `as_of`, read from a histogram whose buckets are 4 % wide:
    exact when a bucket's spells are equal), and the share of waiting time on each party."""
    figures = stage_times(session=session, user=user, scope=scope)
    return StageTimesPublic(
        as_of=figures.as_of,
        stages=[StageTimePublic(**asdict(s)) for s in figures.stages],
        waiting=[WaitingSharePublic(**asdict(w)) for w in figures.waiting],
    )


@router.get("/clusters")
def read_cluster_matrix(
    session: SessionDep, user: CurrentUser, scope: ReportScopeDep
) -> list[MatrixCell]:
    """Home cluster → cluster of the partner who accepted the introduction, by `as_of`:
    introductions, meetings held, requesters who answered that cooperation is possible."""
    return cluster_matrix(session=session, user=user, scope=scope)


@router.get("/outcomes")
def read_outcomes(session: SessionDep, user: CurrentUser, scope: ReportScopeDep) -> Outcomes:
    """Closed exchanges by outcome, survey answers by side and answer, mean satisfaction
    (1 to 5), recommend score (share of 9 and 10 minus share of 0 to 6, from -1 to 1), the
    outcome wave's results and the agreements reached by type."""
    return outcomes(session=session, user=user, scope=scope)


@router.get(
    "/exchanges.csv",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One row per exchange, with a header row.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
def export_exchanges(
    engine: EngineDep,
    user: CurrentUser,
    start: Annotated[Day, Query(alias="from")] = None,
    end: Annotated[Day, Query(alias="to")] = None,
) -> StreamingResponse:
    """One row per exchange the caller may see (submitted in the period): ids, clusters,
    organisations, when each step was reached, outcome, survey answers, agreement type.
    Streamed; a cell a spreadsheet would run as a formula starts with an apostrophe."""
    _period(start, end)
    require_reader(user)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_COLUMNS)
        with Session(engine) as session:
            for row in export_rows(session=session, user=user, start=start, end=end):
                writer.writerow(row)
                if buffer.tell() > 64 * 1024:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="exchanges.csv"'},
    )
