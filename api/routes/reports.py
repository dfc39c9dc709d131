"""Programme reports as JSON and CSV: the same figures as the managers' pages."""

import csv
import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlmodel import Session

from api.deps import CurrentUser, EngineDep, SessionDep
from ce4big.domain import CLUSTER_IDS, Role, Stage
from ce4big.errors import Forbidden, Invalid
from ce4big.models import utcnow
from ce4big.reports import (
    EXPORT_COLUMNS,
    FunnelStep,
    Party,
    export_rows,
    funnel,
    stage_times,
)

router = APIRouter(prefix="/reports", tags=["reports"])


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


@dataclass(frozen=True)
class ReportFilter:
    start: date | None
    end: date | None
    cluster: str | None
    as_of: date


def report_filter(
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
    cluster: Annotated[str | None, Query(max_length=32)] = None,
    as_of: Annotated[date | None, Query()] = None,
) -> ReportFilter:
    """The period (`from`, `to`: UTC days of submission), the home cluster, and the day whose
    end the figures stand at (default today)."""
    _period(start, end)
    if cluster is not None and cluster not in CLUSTER_IDS:
        raise Invalid(f"cluster: {cluster!r} is not one of {', '.join(sorted(CLUSTER_IDS))}")
    return ReportFilter(start=start, end=end, cluster=cluster, as_of=as_of or utcnow().date())


def _period(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and end < start:
        raise Invalid("to: the period ends before it starts")


ReportFilterDep = Annotated[ReportFilter, Depends(report_filter)]


@router.get("/funnel")
def read_funnel(session: SessionDep, user: CurrentUser, filters: ReportFilterDep) -> FunnelPublic:
    """Exchanges submitted in the period, counted at each step they had reached by the end of
    `as_of`, with the conversion from the step before. Managers see every cluster (or
    `cluster`); a broker, their own cluster's exchanges."""
    figures = funnel(session=session, user=user, **asdict(filters))
    return FunnelPublic(
        as_of=figures.as_of, steps=[FunnelStepPublic(**asdict(s)) for s in figures.steps]
    )


@router.get("/stages")
def read_stage_times(
    session: SessionDep, user: CurrentUser, filters: ReportFilterDep
) -> StageTimesPublic:
    """For the exchanges submitted in the period: how long each stage took (median and 90th
    percentile of the spells ended by `as_of`), and the share of waiting time on each party."""
    figures = stage_times(session=session, user=user, **asdict(filters))
    return StageTimesPublic(
        as_of=figures.as_of,
        stages=[StageTimePublic(**asdict(s)) for s in figures.stages],
        waiting=[WaitingSharePublic(**asdict(w)) for w in figures.waiting],
    )


@router.get("/exchanges.csv", response_class=StreamingResponse)
def export_exchanges(
    engine: EngineDep,
    user: CurrentUser,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> StreamingResponse:
    """One row per exchange the caller may see (submitted in the period): ids, clusters,
    organisations, when each step was reached, outcome, survey answers, agreement type.
    Streamed; a cell a spreadsheet would run as a formula starts with an apostrophe."""
    _period(start, end)
    if user.role not in (Role.MANAGER, Role.ADMIN, Role.BROKER):
        raise Forbidden("reports are for managers and brokers")

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
