"""Decisions sent to the workflow: bounded in time, and answered without an Update when the
live state shows the very decision in force; the read model says when to ask it."""

import asyncio
import time
from typing import Any, cast

import pytest
from sqlmodel import Session
from temporalio.client import Client

from ce4big.decisions import (
    ALREADY_DECIDED,
    VettingRecord,
    amendment_in_force,
    amendment_recorded,
    host_review_in_force,
    host_review_recorded,
    pick_in_force,
    pick_recorded,
    proposal_in_force,
    proposal_recorded,
    send_decision,
    shortlist_in_force,
    shortlist_recorded,
    vetting_in_force,
    vetting_recorded,
)
from ce4big.domain import HostVerdict, MeetingMode, Stage, VettingVerdict
from ce4big.errors import Busy, Pending
from ce4big.lifecycle import (
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
from ce4big.models import ExchangeCandidate, ExchangeEvent
from tests.exchange_world import PARTNER_ID, add_world

BROKER = Actor("broker@biowin.example", "broker", 2, "biowin")
SME = Actor("anna@bw.example", "sme", 1, "biowin", "bw-sme")
SLOT = SlotData("2026-04-01T09:00:00+02:00", "2026-04-01T10:00:00+02:00")


class Workflow:
    """A workflow handle that answers the state query and records the Updates it gets."""

    def __init__(
        self, state: dict[str, Any], *, delay: float = 0.0, query_delay: float = 0.0
    ) -> None:
        self.state = state
        self.delay = delay
        self.query_delay = query_delay
        self.updates: list[str] = []

    def get_workflow_handle(self, workflow_id: str) -> "Workflow":
        return self

    async def query(self, query: str, **_: Any) -> dict[str, Any]:
        await asyncio.sleep(self.query_delay)
        return self.state

    async def execute_update(self, update: str, argument: Any, **_: Any) -> DecisionResult:
        self.updates.append(update)
        await asyncio.sleep(self.delay)
        return DecisionResult(stage=Stage.MATCHING)


async def decide(workflow: Workflow, **kwargs: Any) -> DecisionResult:
    return await send_decision(
        client=cast(Client, workflow),
        workflow_id="exchange-1",
        update="vet",
        argument=None,
        **kwargs,
    )


class TestSendDecision:
    async def test_a_decision_in_force_is_answered_without_an_update(self) -> None:
        workflow = Workflow({"stage": "matching"})
        result = await decide(workflow, in_force=lambda state: True)
        assert (result.stage, result.detail) == (Stage.MATCHING, ALREADY_DECIDED)
        assert workflow.updates == []

    async def test_any_other_goes_to_the_workflow(self) -> None:
        workflow = Workflow({"stage": "vetting"})
        result = await decide(workflow, in_force=lambda state: False)
        assert result.detail == "" and workflow.updates == ["vet"]

    async def test_an_update_not_answered_in_time_is_pending(self) -> None:
        workflow = Workflow({"stage": "vetting"}, delay=30)
        started = time.monotonic()
        with pytest.raises(Pending) as pending:
            await decide(workflow, wait_seconds=0.2)
        assert time.monotonic() - started < 2
        assert pending.value.status_code == 503 and pending.value.headers()["Retry-After"]
        assert pending.value.code == "pending" and workflow.updates == ["vet"]

    async def test_a_state_not_read_in_time_is_busy_and_sends_nothing(self) -> None:
        workflow = Workflow({"stage": "vetting"}, query_delay=30)
        with pytest.raises(Busy) as busy:
            await decide(workflow, wait_seconds=0.2, in_force=lambda state: False)
        assert not isinstance(busy.value, Pending) and busy.value.code == "unavailable"
        assert workflow.updates == []

    async def test_the_same_decision_again_while_in_flight_joins_its_update(self) -> None:
        workflow = Workflow({"stage": "vetting"}, delay=0.3)
        first, second = await asyncio.gather(decide(workflow), decide(workflow))
        assert first == second and workflow.updates == ["vet"]

    async def test_a_retry_after_busy_waits_for_the_first_update(self) -> None:
        workflow = Workflow({"stage": "vetting"}, delay=0.5)
        with pytest.raises(Busy):
            await decide(workflow, wait_seconds=0.1)
        result = await decide(workflow, wait_seconds=5)
        assert result.stage == Stage.MATCHING and workflow.updates == ["vet"]
        # Answered: the same words now go to the workflow again, whose validator decides.
        await decide(workflow)
        assert workflow.updates == ["vet", "vet"]


def vetting(stage: str) -> dict[str, Any]:
    return {"stage": stage}


class TestInForce:
    def test_a_verdict_once_the_workflow_moved_on(self) -> None:
        approve = VettingDecision(BROKER, VettingVerdict.APPROVE)
        recorded = VettingRecord("vetting_approve", BROKER.email, "")
        assert vetting_in_force(approve, recorded)(vetting("matching"))
        assert not vetting_in_force(approve, recorded)(vetting("vetting"))
        assert not vetting_in_force(approve, None)(vetting("matching"))
        noted = VettingDecision(BROKER, VettingVerdict.APPROVE, "fine")
        assert not vetting_in_force(noted, recorded)(vetting("matching"))
        # After an amendment the same verdict is a new one.
        amended = VettingRecord("amended", SME.email, "")
        assert not vetting_in_force(approve, amended)(vetting("matching"))

    def test_an_amendment_while_it_waits_for_vetting_with_the_same_text(self) -> None:
        amendment = Amendment(SME, "assays named", "A better title")
        recorded = VettingRecord("amended", SME.email, "assays named")
        same = amendment_in_force(amendment, recorded, title="A better title", description="d")
        other = amendment_in_force(amendment, recorded, title="Old title", description="d")
        assert same(vetting("vetting"))
        assert not same(vetting("matching")) and not other(vetting("vetting"))

    def test_the_shortlist_in_force(self) -> None:
        decision = ShortlistDecision(BROKER, ["bm-cro", "kr-cro"])
        assert shortlist_in_force(decision)({"shortlist": ["bm-cro", "kr-cro"]})
        assert not shortlist_in_force(decision)({"shortlist": ["kr-cro", "bm-cro"]})
        assert not shortlist_in_force(decision)({"shortlist": []})

    def test_a_host_review_already_taken(self) -> None:
        endorse = HostReviewDecision(BROKER, "bm-cro", HostVerdict.ENDORSE)
        state = {"candidates": [{"organisation_id": "bm-cro", "host_decision": "endorsed"}]}
        assert host_review_in_force(endorse)(state)
        veto = HostReviewDecision(BROKER, "bm-cro", HostVerdict.VETO)
        assert not host_review_in_force(veto)(state)

    def test_the_requesters_open_proposal(self) -> None:
        proposal = SlotProposal(SME, [SLOT], "Europe/Brussels", MeetingMode.VIDEO, "")
        open_ = {
            "by": "requester",
            "slots": [{"start": SLOT.start, "end": SLOT.end}],
            "timezone": "Europe/Brussels",
            "mode": "video",
            "location": "",
        }
        assert proposal_in_force(proposal)({"proposal": open_})
        assert not proposal_in_force(proposal)({"proposal": {**open_, "by": "partner"}})
        assert not proposal_in_force(proposal)({"proposal": {**open_, "location": "Liège"}})
        assert not proposal_in_force(proposal)({"proposal": None})

    def test_the_pick_that_made_the_meeting(self) -> None:
        pick = SlotPick(SME, "2026-04-01T07:00:00+00:00")
        state = {
            "proposal": {"by": "partner"},
            "meeting": {"start": SLOT.start, "status": "confirmed"},
        }
        assert pick_in_force(pick)(state)
        assert not pick_in_force(pick)(
            {**state, "meeting": {**state["meeting"], "status": "rescheduling"}}
        )
        assert not pick_in_force(SlotPick(SME, SLOT.end))(state)


class TestRecorded:
    """Whether the read model shows a decision recorded: only then is the live state asked."""

    def test_the_latest_vetting_record(self) -> None:
        approve = VettingDecision(BROKER, VettingVerdict.APPROVE)
        assert vetting_recorded(approve, VettingRecord("vetting_approve", BROKER.email, ""))
        assert not vetting_recorded(approve, None)
        assert not vetting_recorded(approve, VettingRecord("amended", SME.email, ""))
        amendment = Amendment(SME, "assays named")
        assert amendment_recorded(amendment, VettingRecord("amended", SME.email, "assays named"))
        assert not amendment_recorded(amendment, VettingRecord("amended", SME.email, "other"))

    def test_the_latest_shortlist_proposal_and_meeting(self, session: Session) -> None:
        exchange_id = add_world(session).exchange_id
        shortlist = ShortlistDecision(BROKER, ["bm-cro", "kr-cro"])
        proposal = SlotProposal(SME, [SLOT], "Europe/Brussels", MeetingMode.VIDEO, "")
        pick = SlotPick(SME, "2026-04-01T07:00:00+00:00")
        assert not shortlist_recorded(session, exchange_id, shortlist)
        assert not proposal_recorded(session, exchange_id, proposal)
        assert not pick_recorded(session, exchange_id, pick)
        recorded: list[tuple[str, dict[str, Any]]] = [
            ("shortlisted", {"organisation_ids": ["bm-cro", "kr-cro"]}),
            ("slots_proposed", {"by": "requester", "round": 1, "slots": [SLOT.start]}),
            ("meeting_scheduled", {"start": SLOT.start, "end": SLOT.end, "sequence": 0}),
        ]
        for number, (kind, detail) in enumerate(recorded):
            session.add(
                ExchangeEvent(
                    exchange_id=exchange_id, event_key=f"e-{number}", kind=kind, detail=detail
                )
            )
        session.flush()
        assert shortlist_recorded(session, exchange_id, shortlist)
        assert not shortlist_recorded(session, exchange_id, ShortlistDecision(BROKER, ["kr-cro"]))
        assert proposal_recorded(session, exchange_id, proposal)
        later = SlotData("2026-04-02T09:00:00+02:00", "2026-04-02T10:00:00+02:00")
        assert not proposal_recorded(session, exchange_id, SlotProposal(SME, [later], "UTC"))
        assert pick_recorded(session, exchange_id, pick)
        assert not pick_recorded(session, exchange_id, SlotPick(SME, SLOT.end))

    def test_a_host_review_on_the_candidates_row(self, session: Session) -> None:
        exchange_id = add_world(session).exchange_id
        endorse = HostReviewDecision(BROKER, PARTNER_ID, HostVerdict.ENDORSE)
        candidate = ExchangeCandidate(
            exchange_id=exchange_id, organisation_id=PARTNER_ID, rank=1, score=0.9
        )
        session.add(candidate)
        session.flush()
        assert not host_review_recorded(session, exchange_id, endorse)
        candidate.host_decision = "endorsed"
        session.add(candidate)
        session.flush()
        assert host_review_recorded(session, exchange_id, endorse)
        veto = HostReviewDecision(BROKER, PARTNER_ID, HostVerdict.VETO)
        assert not host_review_recorded(session, exchange_id, veto)
