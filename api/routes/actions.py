"""`/api/v1/actions/{token}`: the JSON side of every e-mail link."""

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api.deps import EngineDep, LinkLimit, SettingsDep, TemporalDep
from ce4big.links import act_on_link, describe_link, open_link_async
from ce4big.models import DecisionPublic
from ce4big.schemas import ActionBody, error_responses

# A link may be unknown (404), used, expired or revoked (409), or sent to an account that has
# since lost the authority it was sent for (403).
router = APIRouter(
    prefix="/actions", tags=["actions"], responses=error_responses(403, 404, 409, 422, 503)
)

Token = Annotated[str, Path(min_length=16, max_length=100)]


@router.get("/{token}")
async def read_action(
    token: Token, engine: EngineDep, client: TemporalDep, settings: SettingsDep
) -> dict[str, Any]:
    link = await open_link_async(engine=engine, plain=token)
    return await describe_link(engine=engine, client=client, link=link, settings=settings)


@router.post("/{token}", dependencies=[LinkLimit], responses=error_responses(400, 413, 429))
async def take_action(
    token: Token,
    body: ActionBody,
    engine: EngineDep,
    client: TemporalDep,
    settings: SettingsDep,
) -> DecisionPublic:
    link = await open_link_async(engine=engine, plain=token)
    result = await act_on_link(
        engine=engine, client=client, settings=settings, link=link, body=body
    )
    assert link.exchange.id is not None
    return DecisionPublic(exchange_id=link.exchange.id, stage=result.stage, detail=result.detail)
