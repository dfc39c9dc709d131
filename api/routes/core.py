"""Health, identity and reference data."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from api.deps import CurrentUser, SessionDep
from ce4big.db import ping
from ce4big.models import Cluster, ClusterPublic, UserPublic
from ce4big.schemas import ErrorDetail, error_responses
from ce4big.temporal import TemporalConnector

router = APIRouter(tags=["health"])
api_router = APIRouter(tags=["identity"], responses=error_responses(401, 503))


class Health(BaseModel):
    status: str
    # 503: what does not answer, "database" or "temporal".
    failing: list[str] | None = None
    error: ErrorDetail | None = None


@router.get(
    "/healthz",
    response_model=None,
    responses={
        200: {"model": Health, "description": "The database and Temporal answer."},
        503: {"model": Health, "description": "Something the app needs does not answer."},
    },
)
async def healthz(request: Request) -> JSONResponse:
    failing: list[str] = []
    try:
        await asyncio.to_thread(ping, request.app.state.engine)
    except SQLAlchemyError:
        failing.append("database")
    connector: TemporalConnector = request.app.state.temporal
    if not await connector.healthy():
        failing.append("temporal")
    if failing:
        message = f"not answering: {', '.join(failing)}"
        return JSONResponse(
            {
                "status": "unavailable",
                "failing": failing,
                "error": {"code": "unavailable", "message": message},
            },
            status_code=503,
        )
    return JSONResponse({"status": "ok"})


@api_router.get("/me")
def read_me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user, from_attributes=True)


@api_router.get("/clusters")
def list_clusters(session: SessionDep, _user: CurrentUser) -> list[ClusterPublic]:
    clusters = session.exec(select(Cluster).order_by(Cluster.id)).all()
    return [ClusterPublic.model_validate(c, from_attributes=True) for c in clusters]
