"""The update validators and decisions on a bare state: no Temporal server, no worker."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from temporalio.exceptions import ApplicationError

from ce4big.domain import HostVerdict, Outcome, Stage, SurveyOutcome, VettingVerdict
from ce4big.lifecycle import (
    INVALID_DECISION,
    PARTNER,
    REQUESTER,
    WRONG_ACTOR,
    WRONG_STAGE,
    Amendment,
    CandidateState,
    Closure,
    HostReviewDecision,
    Meeting,
    Proposal,
    ShortlistDecision,
    SlotData,
    SlotPick,
    SlotProposal,
    SurveyAnswer,
    VettingDecision,
)
from tests.workflows.conftest import (
    HOME_BROKER,
    MANAGER,
    exchange_input,
    host_broker,
    partner,
)
from tests.workflows.conftest import (
    REQUESTER as REQUESTER_ACTOR,
)
from workflows import decisions
from workflows.state import LifecycleState
from workflows.validators import (
    slot_problem,
    validate_amend,
    validate_cancel,
    validate_host_review,
    validate_pick,
    validate_propose,
    validate_shortlist,
    validate_survey,
    validate_vet,
    validate_withdraw,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def state_at(stage: Stage, **changes: Any) -> LifecycleState:
    state = LifecycleState(data=exchange_input(1), since=NOW, stage=stage)
    for name, value in changes.items():
        setattr(state, name, value)
    return state


def refusal(check: Callable[[], None]) -> ApplicationError:
    with pytest.raises(ApplicationError) as refused:
        check()
    assert refused.value.non_retryable
    return refused.value


def slot(hours: float, length: float = 1) -> SlotData:
    start = NOW + timedelta(hours=hours)
    return SlotData(start.isoformat(), (start + timedelta(hours=length)).isoformat())


def candidate(organisation_id: str, cluster: str, decision: str | None = None) -> CandidateState:
    return CandidateState(organisation_id, f"Org {organisation_id}", cluster, 1.0, [], decision)


def scheduling(**changes: Any) -> LifecycleState:
    return state_at(Stage.SCHEDULING, partner="bm-1", **changes)


def proposal_by(side: str, *slots: SlotData) -> Proposal:
    return Proposal(side, list(slots or [slot(24)]), "Europe/Brussels", "video", "", 1, 1)


class TestValidateVet:
    def test_a_home_broker_approves_at_vetting(self) -> None:
        validate_vet(state_at(Stage.VETTING), VettingDecision(HOME_BROKER, VettingVerdict.APPROVE))

    def test_the_requester_may_not_vet(self) -> None:
        error = refusal(
            lambda: validate_vet(
                state_at(Stage.VETTING), VettingDecision(REQUESTER_ACTOR, VettingVerdict.APPROVE)
            )
        )
        assert error.type == WRONG_ACTOR

    def test_an_unknown_verdict_is_invalid(self) -> None:
        # Only a client that bypasses the API's schema could send one.
        maybe = cast(VettingVerdict, "maybe")
        error = refusal(
            lambda: validate_vet(state_at(Stage.VETTING), VettingDecision(HOME_BROKER, maybe))
        )
        assert error.type == INVALID_DECISION

    def test_a_rejection_needs_a_reason(self) -> None:
        error = refusal(
            lambda: validate_vet(
                state_at(Stage.VETTING), VettingDecision(HOME_BROKER, VettingVerdict.REJECT)
            )
        )
        assert error.type == INVALID_DECISION
        assert error.message.startswith("note:")

    def test_a_second_different_verdict_is_out_of_stage(self) -> None:
        state = state_at(Stage.VETTING)
        decisions.vet(state, VettingDecision(HOME_BROKER, VettingVerdict.APPROVE))

        error = refusal(
            lambda: validate_vet(
                state, VettingDecision(HOME_BROKER, VettingVerdict.REJECT, "no budget")
            )
        )

        assert error.type == WRONG_STAGE
        assert "already been vetted" in error.message

    def test_the_same_verdict_again_is_acknowledged_after_the_stage_moved(self) -> None:
        state = state_at(Stage.VETTING)
        decision = VettingDecision(HOME_BROKER, VettingVerdict.APPROVE)
        decisions.vet(state, decision)
        state.stage = Stage.MATCHING

        validate_vet(state, decision)

        assert decisions.vet(state, decision).detail == "already decided"


class TestValidateAmend:
    def amended(self, amendment: Amendment) -> LifecycleState:
        state = state_at(Stage.CHANGES_REQUESTED)
        validate_amend(state, amendment)
        decisions.amend(state, amendment)
        return state

    def test_the_same_amendment_again_is_acknowledged_while_it_waits_for_vetting(self) -> None:
        amendment = Amendment(REQUESTER_ACTOR, "assays named", "A better title")
        state = self.amended(amendment)
        state.stage = Stage.VETTING

        validate_amend(state, amendment)

        assert decisions.amend(state, amendment).detail == "already decided"

    def test_the_same_amendment_after_the_vetting_is_out_of_stage(self) -> None:
        amendment = Amendment(REQUESTER_ACTOR, "assays named")
        state = self.amended(amendment)
        state.stage = Stage.VETTING
        decisions.vet(state, VettingDecision(HOME_BROKER, VettingVerdict.APPROVE))

        error = refusal(lambda: validate_amend(state, amendment))
        state.stage = Stage.MATCHING
        later = refusal(lambda: validate_amend(state, amendment))

        assert (error.type, later.type) == (WRONG_STAGE, WRONG_STAGE)
        assert "matching" in later.message

    def test_the_same_note_with_another_text_is_a_new_amendment(self) -> None:
        state = self.amended(Amendment(REQUESTER_ACTOR, "assays named", "A better title"))
        state.stage = Stage.VETTING

        error = refusal(
            lambda: validate_amend(state, Amendment(REQUESTER_ACTOR, "assays named", "Other"))
        )

        assert error.type == WRONG_STAGE


class TestValidateShortlist:
    def matching(self) -> LifecycleState:
        return state_at(Stage.MATCHING, ranking=["bm-1", "kr-1"])

    def test_candidates_of_the_ranking_are_shortlisted(self) -> None:
        validate_shortlist(self.matching(), ShortlistDecision(HOME_BROKER, ["kr-1", "bm-1"]))

    @pytest.mark.parametrize(
        ("ids", "says"),
        [
            ([], "choose 1 to 5"),
            (["bm-1", "bm-1"], "appears twice"),
            (["bm-1", "zz-9"], "not candidates of this exchange: zz-9"),
        ],
    )
    def test_a_bad_list_is_invalid(self, ids: list[str], says: str) -> None:
        error = refusal(
            lambda: validate_shortlist(self.matching(), ShortlistDecision(HOME_BROKER, ids))
        )
        assert error.type == INVALID_DECISION
        assert says in error.message

    def test_outside_matching_it_is_the_wrong_stage(self) -> None:
        state = state_at(Stage.VETTING, ranking=["bm-1"])
        error = refusal(lambda: validate_shortlist(state, ShortlistDecision(HOME_BROKER, ["bm-1"])))
        assert error.type == WRONG_STAGE


class TestValidateHostReview:
    def reviewing(self, decision: str | None = None) -> LifecycleState:
        return state_at(
            Stage.HOST_REVIEW,
            shortlist=["bm-1"],
            candidates={"bm-1": candidate("bm-1", "biom", decision)},
        )

    def test_a_broker_of_the_candidates_cluster_endorses(self) -> None:
        validate_host_review(
            self.reviewing(), HostReviewDecision(host_broker("biom"), "bm-1", HostVerdict.ENDORSE)
        )

    def test_a_broker_of_another_cluster_may_not(self) -> None:
        error = refusal(
            lambda: validate_host_review(
                self.reviewing(),
                HostReviewDecision(host_broker("klsk"), "bm-1", HostVerdict.ENDORSE),
            )
        )
        assert error.type == WRONG_ACTOR

    def test_a_candidate_off_the_shortlist_is_invalid(self) -> None:
        error = refusal(
            lambda: validate_host_review(
                self.reviewing(), HostReviewDecision(host_broker("biom"), "kr-1", HostVerdict.VETO)
            )
        )
        assert error.type == INVALID_DECISION

    def test_the_same_verdict_again_passes_even_after_the_stage(self) -> None:
        state = self.reviewing("endorsed")
        state.stage = Stage.INTRODUCTION
        validate_host_review(
            state, HostReviewDecision(host_broker("biom"), "bm-1", HostVerdict.ENDORSE)
        )

    def test_the_opposite_verdict_once_decided_is_out_of_stage(self) -> None:
        error = refusal(
            lambda: validate_host_review(
                self.reviewing("endorsed"),
                HostReviewDecision(host_broker("biom"), "bm-1", HostVerdict.VETO),
            )
        )
        assert error.type == WRONG_STAGE


class TestValidatePropose:
    def test_the_requester_proposes_first(self) -> None:
        validate_propose(scheduling(), SlotProposal(REQUESTER_ACTOR, [slot(24)], "Europe/Brussels"))

    def test_the_partner_waits_for_the_first_proposal(self) -> None:
        error = refusal(
            lambda: validate_propose(
                scheduling(), SlotProposal(partner("bm-1"), [slot(24)], "Europe/Brussels")
            )
        )
        assert error.type == WRONG_STAGE

    def test_rounds_are_limited(self) -> None:
        state = scheduling(proposal=proposal_by(PARTNER), rounds=3)
        error = refusal(
            lambda: validate_propose(
                state, SlotProposal(REQUESTER_ACTOR, [slot(24)], "Europe/Brussels")
            )
        )
        assert error.type == WRONG_STAGE
        assert "at most 3 rounds" in error.message

    def test_a_confirmed_meeting_may_be_rescheduled_by_either_side(self) -> None:
        meeting = Meeting(slot(24).start, slot(24).end, "Europe/Brussels", "video", "")
        state = state_at(
            Stage.MEETING_SCHEDULED,
            partner="bm-1",
            proposal=proposal_by(REQUESTER),
            meeting=meeting,
        )
        validate_propose(state, SlotProposal(REQUESTER_ACTOR, [slot(48)], "Europe/Brussels"))

    def test_someone_else_may_not_propose(self) -> None:
        error = refusal(
            lambda: validate_propose(
                scheduling(), SlotProposal(partner("kr-1"), [slot(24)], "Europe/Brussels")
            )
        )
        assert error.type == WRONG_ACTOR


class TestSlotProblem:
    def test_good_slots_have_none(self) -> None:
        assert slot_problem([slot(1), slot(3)], 5) is None

    @pytest.mark.parametrize(
        ("slots", "says"),
        [
            ([], "propose 1 to 5 slots"),
            ([SlotData("tomorrow", "later")], "slots.0: not an ISO 8601"),
            ([SlotData("2026-03-03T10:00", "2026-03-03T11:00")], "needs an offset"),
            ([slot(1), slot(2, length=-1)], "slots.1: the end must come after the start"),
        ],
    )
    def test_bad_slots_say_which_and_why(self, slots: list[SlotData], says: str) -> None:
        problem = slot_problem(slots, 5)
        assert problem is not None and says in problem


class TestValidatePick:
    def test_the_other_side_picks_a_proposed_start_in_any_offset(self) -> None:
        state = scheduling(proposal=proposal_by(REQUESTER, slot(24)))
        start = (NOW + timedelta(hours=24)).astimezone(timezone(timedelta(hours=2))).isoformat()
        validate_pick(state, SlotPick(partner("bm-1"), start))

    def test_nobody_picks_from_their_own_proposal(self) -> None:
        state = scheduling(proposal=proposal_by(REQUESTER, slot(24)))
        error = refusal(lambda: validate_pick(state, SlotPick(REQUESTER_ACTOR, slot(24).start)))
        assert error.type == WRONG_ACTOR

    def test_a_start_that_was_not_proposed_is_invalid(self) -> None:
        state = scheduling(proposal=proposal_by(REQUESTER, slot(24)))
        error = refusal(lambda: validate_pick(state, SlotPick(partner("bm-1"), slot(25).start)))
        assert error.type == INVALID_DECISION


class TestValidateSurvey:
    def open_survey(self) -> LifecycleState:
        return state_at(Stage.FOLLOW_UP, partner="bm-1", survey_open=True)

    def test_either_side_answers_once_open(self) -> None:
        validate_survey(
            self.open_survey(), SurveyAnswer(partner("bm-1"), SurveyOutcome.COOPERATION_POSSIBLE)
        )

    @pytest.mark.parametrize(
        "answer",
        [
            SurveyAnswer(REQUESTER_ACTOR, cast(SurveyOutcome, "great")),
            SurveyAnswer(REQUESTER_ACTOR, SurveyOutcome.COOPERATION_POSSIBLE, satisfaction=6),
            SurveyAnswer(REQUESTER_ACTOR, SurveyOutcome.COOPERATION_POSSIBLE, recommend=11),
        ],
    )
    def test_an_answer_out_of_range_is_invalid(self, answer: SurveyAnswer) -> None:
        error = refusal(lambda: validate_survey(self.open_survey(), answer))
        assert error.type == INVALID_DECISION

    def test_before_it_opens_it_is_the_wrong_stage(self) -> None:
        state = state_at(Stage.FOLLOW_UP, partner="bm-1")
        error = refusal(
            lambda: validate_survey(
                state, SurveyAnswer(REQUESTER_ACTOR, SurveyOutcome.COOPERATION_POSSIBLE)
            )
        )
        assert error.type == WRONG_STAGE


class TestValidateClosure:
    def test_only_the_requester_withdraws(self) -> None:
        error = refusal(lambda: validate_withdraw(state_at(Stage.MATCHING), Closure(HOME_BROKER)))
        assert error.type == WRONG_ACTOR

    def test_only_a_manager_cancels(self) -> None:
        error = refusal(lambda: validate_cancel(state_at(Stage.MATCHING), Closure(REQUESTER_ACTOR)))
        assert error.type == WRONG_ACTOR

    def test_the_same_click_twice_passes_while_the_exchange_closes(self) -> None:
        state = state_at(Stage.MATCHING)
        decisions.close(state, Outcome.CANCELLED, Closure(MANAGER, "duplicate"))
        state.closing = True

        validate_cancel(state, Closure(MANAGER, "duplicate"))

        error = refusal(lambda: validate_withdraw(state, Closure(REQUESTER_ACTOR)))
        assert error.type == WRONG_STAGE


class TestDecisions:
    def test_a_proposal_while_the_meeting_stands_asks_to_reschedule(self) -> None:
        meeting = Meeting(slot(24).start, slot(24).end, "Europe/Brussels", "video", "")
        state = state_at(
            Stage.MEETING_SCHEDULED,
            partner="bm-1",
            proposal=proposal_by(REQUESTER),
            meeting=meeting,
            rounds=2,
            proposals=2,
        )

        decisions.propose_slots(state, SlotProposal(partner("bm-1"), [slot(48)], "Europe/Berlin"))

        assert meeting.status == "rescheduling"
        assert state.previous_start == slot(24).start
        assert state.proposal is not None
        assert (state.proposal.by, state.proposal.round, state.proposal.number) == (PARTNER, 1, 3)
        assert state.pick is None

    def test_a_survey_answer_that_the_meeting_did_not_take_place_reports_it(self) -> None:
        state = state_at(Stage.FOLLOW_UP, partner="bm-1", waiting_on=[REQUESTER, PARTNER])
        answer = SurveyAnswer(
            REQUESTER_ACTOR, SurveyOutcome.DID_NOT_TAKE_PLACE, comment="nobody came"
        )

        result = decisions.answer_survey(state, answer)

        assert result.detail == ""
        assert state.waiting_on == [PARTNER]
        assert state.not_held is not None and state.not_held.note == "nobody came"

    def test_a_pick_becomes_the_meeting_with_the_proposals_details(self) -> None:
        state = scheduling(proposal=proposal_by(REQUESTER, slot(24), slot(48)), invite_sequence=1)

        decisions.pick_slot(state, SlotPick(partner("bm-1"), slot(48).start))

        assert state.meeting == Meeting(
            slot(48).start, slot(48).end, "Europe/Brussels", "video", "", sequence=1
        )
        assert state.meeting_version == 1
