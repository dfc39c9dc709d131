"""Programme reports as JSON: the same figures as the managers' pages."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import CurrentUser, SessionDep
from ce4big.domain import CLUSTER_IDS
from ce4big.errors import Invalid
from ce4big.models import utcnow
from ce4big.reports import FunnelStep, funnel

router = APIRouter(prefix="/reports", tags=["reports"])


class FunnelStepPublic(BaseModel):
    step: FunnelStep
    count: int
    conversion: float | None


class FunnelPublic(BaseModel):
    as_of: date
    steps: list[FunnelStepPublic]


@router.get("/funnel")
def read_funnel(
    session: SessionDep,
    user: CurrentUser,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
    cluster: Annotated[str | None, Query(max_length=32)] = None,
    as_of: Annotated[date | None, Query()] = None,
) -> FunnelPublic:
    """Exchanges submitted between `from` and `to` (UTC days), counted at each step they had
    reached by the end of `as_of` (default today), with the conversion from the step before.
    Managers see every cluster (or `cluster`); a broker, their own cluster's exchanges."""
    if start is not None and end is not None and end < start:
        raise Invalid("to: the period ends before it starts")
    if cluster is not None and cluster not in CLUSTER_IDS:
        raise Invalid(f"cluster: {cluster!r} is not one of {', '.join(sorted(CLUSTER_IDS))}")
    figures = funnel(
        session=session,
        user=user,
        as_of=as_of or utcnow().date(),
        start=start,
        end=end,
        cluster=cluster,
    )
    return FunnelPublic(
        as_of=figures.as_of,
        steps=[
            FunnelStepPublic(step=s.step, count=s.count, conversion=s.conversion)
            for s in figures.steps
        ],
    )
