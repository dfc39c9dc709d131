"""Decisions go to the exchange's workflow as Updates; refusals come back as HTTP errors.

Every call to Temporal here is bounded (TEMPORAL_TIMEOUT_SECONDS): without a worker an Update
would wait for ever, and the caller is told the exchange is busy instead. A decision already in
force is answered without an Update: an acknowledged repeat costs events in the exchange's
history, which is finite. The read model (SQL) says first whether the decision may be a repeat:
only then is the workflow's live state asked (a query is a workflow task, a replay for a
workflow out of the worker's cache), and an approval or a rejection recorded as the latest
verdict, which nothing can undo, is answered from SQL alone. Any other decision goes straight
to its Update, whose validator acknowledges an identical repeat that SQL did not show yet. The
same decision sent again while its Update is in flight (a client retrying after a 503, a double
click) waits for that Update's answer instead of queueing another one behind it.
"""

import asyncio
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from ce4big.domain import HostVerdict, Stage, VettingVerdict
from ce4big.errors import AppError, Busy, Conflict, Forbidden, Invalid, Pending, Unavailable
from ce4big.lifecycle import (
    INVALID_DECISION,
    REQUESTER,
    WRONG_ACTOR,
    WRONG_STAGE,
    Actor,
    Amendment,
    DecisionResult,
    HostReviewDecision,
    ShortlistDecision,
    SlotData,
    SlotPick,
    SlotProposal,
    VettingDecision,
)
from ce4big.models import ExchangeCandidate, ExchangeEvent, User, utcnow
from ce4big.schemas import ProposalBody, normalise_slots

# TEMPORAL_TIMEOUT_SECONDS's default, for callers that have no settings at hand.
DEFAULT_TIMEOUT_SECONDS = 10.0
BUSY_RETRY_AFTER_SECONDS = 5
# How long an Update that its caller gave up on is still waited for, for a retry to join it.
IN_FLIGHT_SECONDS = 300.0
ALREADY_DECIDED = "already decided"

REFUSALS: dict[str, type[AppError]] = {
    WRONG_STAGE: Conflict,
    WRONG_ACTOR: Forbidden,
    INVALID_DECISION: Invalid,
}


def actor_for_user(user: User) -> Actor:
    return Actor(
        email=user.email,
        role=str(user.role),
        user_id=user.id,
        cluster=user.cluster_id,
        organisation_id=user.organisation_id,
    )


InForce = Callable[[Mapping[str, Any]], bool]
"""Whether the workflow's live state (its `state` query) shows this very decision in force."""


class _TimedOut(Exception):
    pass


async def _bounded(call: Callable[[timedelta], Any], deadline: float) -> Any:
    """`call(rpc_timeout)` until the deadline. The SDK asks again when the server answers an
    Update early with "admitted", so the RPC timeout alone does not bound an Update."""
    remaining = max(0.001, deadline - asyncio.get_running_loop().time())
    try:
        return await asyncio.wait_for(call(timedelta(seconds=remaining)), remaining)
    except (TimeoutError, RPCTimeoutOrCancelledError):
        raise _TimedOut from None
    except RPCError as err:
        if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            raise _TimedOut from None
        raise


def _busy() -> Busy:
    return Busy(
        "the exchange is busy: it did not take the decision in time. Try again in a moment;"
        " sending the same decision again is harmless",
        retry_after_seconds=BUSY_RETRY_AFTER_SECONDS,
    )


def _pending() -> Pending:
    return Pending(
        "the exchange is busy: the decision is sent but not confirmed yet, and may still be"
        " taken. Send the same decision again in a moment to learn its result; it is not taken"
        " twice",
        retry_after_seconds=BUSY_RETRY_AFTER_SECONDS,
    )


async def send_decision(
    *,
    client: Client,
    workflow_id: str,
    update: str,
    argument: Any,
    wait_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    in_force: InForce | None = None,
) -> DecisionResult:
    """Returns once the workflow accepted the decision; raises the refusal as an AppError, Busy
    when the workflow's state cannot be read in time (nothing sent), and Pending when the Update
    is not answered within `wait_seconds` (the decision may still be taken later: Temporal keeps
    an Update it admitted)."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id)
    if in_force is not None:
        state = await _live_state(handle, deadline)
        if state is not None and in_force(state):
            return DecisionResult(stage=Stage(state["stage"]), detail=ALREADY_DECIDED)
    in_flight = _in_flight(client, workflow_id, update, argument)
    try:
        remaining = max(0.001, deadline - asyncio.get_running_loop().time())
        result = await asyncio.wait_for(asyncio.shield(in_flight), remaining)
    except (TimeoutError, _TimedOut):
        raise _pending() from None
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type in REFUSALS:
            raise REFUSALS[cause.type](cause.message) from None
        raise
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            # The workflow has completed (or never started): nothing is open to decide.
            raise Conflict("the exchange is closed: it takes no more decisions") from None
        # Temporal unreachable, or the workflow unable to take decisions right now (a failing
        # workflow task): the caller may retry later, nothing was decided.
        raise Unavailable(f"the exchange cannot take decisions right now: {err.message}") from None
    return result


# Updates sent and not answered yet, by Temporal client and decision. Only while in flight:
# once answered, the same words go to the workflow again, whose validator tells a repeat from a
# new decision; a retry that joins an Update in flight is the same request twice.
_IN_FLIGHT: weakref.WeakKeyDictionary[Client, dict[str, asyncio.Task[DecisionResult]]] = (
    weakref.WeakKeyDictionary()
)


def _in_flight(
    client: Client, workflow_id: str, update: str, argument: Any
) -> asyncio.Task[DecisionResult]:
    """The Update of this very decision still in flight, or a new one, waited for up to
    IN_FLIGHT_SECONDS whether or not its caller still waits."""
    loop = asyncio.get_running_loop()
    flights = _IN_FLIGHT.setdefault(client, {})
    key = f"{workflow_id}\0{update}\0{argument!r}"
    task = flights.get(key)
    if task is not None:
        return task
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id)
    call = _bounded(
        lambda rpc_timeout: handle.execute_update(
            update, argument, result_type=DecisionResult, rpc_timeout=rpc_timeout
        ),
        loop.time() + IN_FLIGHT_SECONDS,
    )
    task = loop.create_task(call)
    flights[key] = task

    def landed(done: asyncio.Task[DecisionResult]) -> None:
        flights.pop(key, None)
        # Retrieved here: every caller may have given up on it.
        if not done.cancelled():
            done.exception()

    task.add_done_callback(landed)
    return task


async def _live_state(handle: WorkflowHandle[Any, Any], deadline: float) -> dict[str, Any] | None:
    """The state before a decision; None when the workflow cannot say (the Update will); Busy
    when it does not answer in time (an Update would not be answered either)."""
    try:
        state: dict[str, Any] = await _bounded(
            lambda rpc_timeout: handle.query("state", result_type=dict, rpc_timeout=rpc_timeout),
            deadline,
        )
    except _TimedOut:
        raise _busy() from None
    except (RPCError, WorkflowQueryFailedError):
        return None
    return state


async def query_state(
    *, client: Client, workflow_id: str, wait_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> dict[str, Any] | None:
    """The workflow's live state, or None when it cannot be asked in time (closed and cleaned
    up, no worker, or Temporal unreachable): lists and timelines come from SQL either way."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    try:
        state: dict[str, Any] = await _bounded(
            lambda rpc_timeout: client.get_workflow_handle(workflow_id).query(
                "state", result_type=dict, rpc_timeout=rpc_timeout
            ),
            deadline,
        )
    except (_TimedOut, RPCError, WorkflowQueryFailedError):
        return None
    return state


# ---------------------------------------------------------------- decisions already in force
# Each answers True only when the workflow's validator would acknowledge the decision as a
# repeat; anything else goes to the workflow, whose validator has the last word.


@dataclass(frozen=True, slots=True)
class VettingRecord:
    """The latest vetting verdict or amendment recorded on an exchange."""

    kind: str
    actor: str
    note: str

    def records(self, kind: str, actor: Actor, note: str) -> bool:
        """This record is of `kind`, by `actor`, with `note`."""
        return (self.kind, self.actor, self.note) == (kind, actor.email, note)


VETTING_KINDS = (*(f"vetting_{v.value}" for v in VettingVerdict), "amended")
# Verdicts that end vetting for good (no amendment follows them): recorded as the latest, in force.
FINAL_VERDICTS = frozenset({VettingVerdict.APPROVE, VettingVerdict.REJECT})


def _last_event(session: Session, exchange_id: int, *kinds: str) -> ExchangeEvent | None:
    """The latest event of one of `kinds` recorded on the exchange."""
    return session.exec(
        select(ExchangeEvent)
        .where(ExchangeEvent.exchange_id == exchange_id, col(ExchangeEvent.kind).in_(kinds))
        .order_by(col(ExchangeEvent.at).desc(), col(ExchangeEvent.id).desc())
    ).first()


def last_vetting_record(session: Session, exchange_id: int) -> VettingRecord | None:
    event = _last_event(session, exchange_id, *VETTING_KINDS)
    if event is None:
        return None
    return VettingRecord(event.kind, event.actor, str((event.detail or {}).get("note") or ""))


def vetting_recorded(decision: VettingDecision, last: VettingRecord | None) -> bool:
    """The verdict is the latest recorded: it may be in force."""
    return last is not None and last.records(
        f"vetting_{decision.decision}", decision.actor, decision.note
    )


def vetting_in_force(decision: VettingDecision, last: VettingRecord | None) -> InForce:
    """The verdict was recorded as the latest, and the workflow has left vetting since (it
    records the verdict before it moves on; a new round of vetting follows an amendment)."""

    def check(state: Mapping[str, Any]) -> bool:
        return state.get("stage") != Stage.VETTING and vetting_recorded(decision, last)

    return check


def amendment_in_force(
    amendment: Amendment, last: VettingRecord | None, *, title: str, description: str
) -> InForce:
    """The amendment was recorded as the latest, its text is the request's, and the amended
    request still waits for its vetting."""

    def check(state: Mapping[str, Any]) -> bool:
        return (
            state.get("stage") == Stage.VETTING
            and amendment_recorded(amendment, last)
            and amendment.title in (None, title)
            and amendment.description in (None, description)
        )

    return check


def amendment_recorded(amendment: Amendment, last: VettingRecord | None) -> bool:
    """The amendment is the latest recorded: it may be in force."""
    return last is not None and last.records("amended", amendment.actor, amendment.note)


def shortlist_in_force(decision: ShortlistDecision) -> InForce:
    def check(state: Mapping[str, Any]) -> bool:
        shortlist = state.get("shortlist") or []
        return bool(shortlist) and list(shortlist) == list(decision.organisation_ids)

    return check


def host_review_in_force(decision: HostReviewDecision) -> InForce:
    wanted = "endorsed" if decision.decision == HostVerdict.ENDORSE else "vetoed"

    def check(state: Mapping[str, Any]) -> bool:
        return any(
            c.get("organisation_id") == decision.organisation_id
            and c.get("host_decision") == wanted
            for c in state.get("candidates") or []
        )

    return check


def proposal_in_force(proposal: SlotProposal) -> InForce:
    """The requester's proposal is the one open (a reschedule or a new round clears it)."""
    slots = [{"start": s.start, "end": s.end} for s in proposal.slots]

    def check(state: Mapping[str, Any]) -> bool:
        open_ = state.get("proposal") or {}
        return (
            open_.get("by") == REQUESTER
            and [{"start": s.get("start"), "end": s.get("end")} for s in open_.get("slots") or []]
            == slots
            and open_.get("timezone") == proposal.timezone
            and open_.get("mode") == proposal.mode
            and open_.get("location") == proposal.location
        )

    return check


def pick_in_force(pick: SlotPick) -> InForce:
    """The requester's pick made the meeting that stands (a reschedule or a meeting not held
    makes a pick new again)."""

    def check(state: Mapping[str, Any]) -> bool:
        meeting = state.get("meeting") or {}
        proposal = state.get("proposal") or {}
        return (
            meeting.get("status") in ("confirmed", "held")
            and proposal.get("by") != REQUESTER
            and _same_instant(str(meeting.get("start")), pick.start)
        )

    return check


def _same_instant(a: str, b: str) -> bool:
    try:
        return datetime.fromisoformat(a) == datetime.fromisoformat(b)
    except ValueError:
        return False


def shortlist_recorded(session: Session, exchange_id: int, decision: ShortlistDecision) -> bool:
    """The latest shortlist recorded is this one: it may be in force."""
    last = _last_event(session, exchange_id, "shortlisted")
    return last is not None and last.detail.get("organisation_ids") == list(
        decision.organisation_ids
    )


def host_review_recorded(session: Session, exchange_id: int, decision: HostReviewDecision) -> bool:
    """The candidate's row holds this review (note_host_decision writes it once the workflow
    accepted one): it may be in force."""
    wanted = "endorsed" if decision.decision == HostVerdict.ENDORSE else "vetoed"
    return (
        session.exec(
            select(ExchangeCandidate.id).where(
                ExchangeCandidate.exchange_id == exchange_id,
                ExchangeCandidate.organisation_id == decision.organisation_id,
                ExchangeCandidate.host_decision == wanted,
            )
        ).first()
        is not None
    )


def proposal_recorded(session: Session, exchange_id: int, proposal: SlotProposal) -> bool:
    """The latest proposal recorded is the requester's with these slots: it may be in force."""
    last = _last_event(session, exchange_id, "slots_proposed")
    return (
        last is not None
        and last.detail.get("by") == REQUESTER
        and last.detail.get("slots") == [s.start for s in proposal.slots]
    )


def pick_recorded(session: Session, exchange_id: int, pick: SlotPick) -> bool:
    """The latest meeting recorded starts at the picked slot: the pick may be in force."""
    last = _last_event(session, exchange_id, "meeting_scheduled")
    return last is not None and _same_instant(str(last.detail.get("start")), pick.start)


def slot_proposal(body: ProposalBody, actor: Actor, horizon_days: int) -> SlotProposal:
    try:
        slots = normalise_slots(proposal=body, now=utcnow(), horizon_days=horizon_days)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return SlotProposal(
        actor=actor,
        slots=[SlotData(start=s, end=e) for s, e in slots],
        timezone=body.timezone,
        mode=body.mode,
        location=body.location,
    )


def note_host_decision(
    session: Session, *, exchange_id: int, organisation_id: str, verdict: HostVerdict
) -> None:
    """Once the workflow accepted a host review, the candidate's row says so at once (the
    workflow writes the same when the whole review ends), so the inbox drops the task."""
    session.execute(
        update(ExchangeCandidate)
        .where(
            col(ExchangeCandidate.exchange_id) == exchange_id,
            col(ExchangeCandidate.organisation_id) == organisation_id,
            col(ExchangeCandidate.host_decision).is_(None),
        )
        .values(host_decision="endorsed" if verdict == HostVerdict.ENDORSE else "vetoed")
    )
