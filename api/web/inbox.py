"""A broker's inbox: what waits on them, soonest deadline first, each row leading to the
screen where it is done."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import EngineDep, SettingsDep
from api.web.visitor import SignedInDep, page, require_role
from ce4big.db import run_in_session
from ce4big.domain import Role
from ce4big.i18n import N_
from ce4big.inbox import InboxItem, Task, broker_inbox
from ce4big.models import utcnow

router = APIRouter(include_in_schema=False)

TASK_LABELS = {
    Task.VET: N_("Vet the request"),
    Task.SHORTLIST: N_("Build the shortlist"),
    Task.HOST_REVIEW: N_("Review a candidate of your cluster"),
    Task.SCHEDULING: N_("Scheduling has stalled"),
}
# What the inbox says after a decision screen sent the broker back here (`?done=`).
NOTICES = {
    "approved": N_("The request is approved: the search for partners starts now."),
    "changes_requested": N_("Your request for changes has been sent to the requester."),
    "rejected": N_("The request is rejected; the requester has been told why."),
    "shortlisted": N_("The shortlist is set: the partners' clusters review it next."),
    "endorsed": N_("You endorsed the introduction; the partner will be asked."),
    "vetoed": N_("You vetoed the introduction; this partner will not be asked."),
}


def task_path(item: InboxItem) -> str:
    screens = {
        Task.VET: "vet",
        Task.SHORTLIST: "shortlist",
        Task.HOST_REVIEW: "host-review",
    }
    screen = screens.get(item.task)
    base = f"/exchanges/{item.exchange_id}"
    return f"{base}/{screen}" if screen else base


@router.get("/inbox", name="inbox")
async def inbox(
    request: Request,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
    done: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    user = require_role(visitor, Role.BROKER)
    now = utcnow()
    items = await run_in_session(
        engine,
        lambda session: broker_inbox(session=session, user=user, settings=settings, now=now),
    )
    return page(
        request,
        visitor,
        settings,
        "web/broker/inbox.html",
        {
            "items": [(item, TASK_LABELS[item.task], task_path(item)) for item in items],
            "notice": NOTICES.get(done),
            "overdue": sum(1 for item in items if item.overdue),
        },
    )
