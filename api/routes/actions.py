"""`/api/v1/actions/{token}`: the JSON side of every e-mail link."""

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api.actions import act_on_link, describe_link, open_link
from api.deps import SessionDep, SettingsDep, TemporalDep
from api.models import DecisionPublic, utcnow
from api.schemas import ActionBody

router = APIRouter(prefix="/actions", tags=["actions"])

Token = Annotated[str, Path(min_length=16, max_length=100)]


@router.get("/{token}")
async def read_action(token: Token, session: SessionDep, client: TemporalDep) -> dict[str, Any]:
    link = open_link(session=session, plain=token, now=utcnow())
    return await describe_link(session=session, client=client, link=link)


@router.post("/{token}")
async def take_action(
    token: Token,
    body: ActionBody,
    session: SessionDep,
    client: TemporalDep,
    settings: SettingsDep,
) -> DecisionPublic:
    link = open_link(session=session, plain=token, now=utcnow())
    result = await act_on_link(
        session=session, client=client, settings=settings, link=link, body=body
    )
    assert link.exchange.id is not None
    return DecisionPublic(exchange_id=link.exchange.id, stage=result.stage, detail=result.detail)
