from temporalio.converter import DataConverter

from activities.types import (
    CandidateEmail,
    ChangesRequestedEmail,
    EmailData,
    ExchangeClosedEmail,
    MeetingCancelledEmail,
    NotifyInput,
    OutcomeWaveEmail,
    PartnerDeclinedEmail,
    RequestRejectedEmail,
)
from ce4big.domain import Outcome


def round_trip(data: NotifyInput) -> NotifyInput:
    converter = DataConverter.default.payload_converter
    (decoded,) = converter.from_payloads(converter.to_payloads([data]), [NotifyInput])
    assert isinstance(decoded, NotifyInput)
    return decoded


def notify_input(email: EmailData | None) -> NotifyInput:
    kind = email.kind if email is not None else "request_received"
    return NotifyInput(exchange_id=1, kind=kind, audiences=["requester"], step_key="k", email=email)


class TestEmailData:
    def test_each_kinds_data_comes_back_as_itself_through_temporals_converter(self) -> None:
        # Shapes that overlap (a reason, an organisation id) are told apart by their tag.
        for email in (
            RequestRejectedEmail(reason="outside the programme"),
            MeetingCancelledEmail(reason="outside the programme"),
            ChangesRequestedEmail(note="add a budget", kind="changes_reminder"),
            CandidateEmail(organisation_id="bm-1", kind="introduction_made"),
            PartnerDeclinedEmail(organisation_id="bm-1", next_step="back_to_matching"),
            OutcomeWaveEmail(organisation_id="bm-1", months=6),
            ExchangeClosedEmail(outcome=Outcome.WITHDRAWN, reason="found one"),
            None,
        ):
            assert round_trip(notify_input(email)).email == email

    def test_the_closed_outcome_decodes_as_the_vocabulary(self) -> None:
        decoded = round_trip(notify_input(ExchangeClosedEmail(outcome=Outcome.EXPIRED))).email

        assert isinstance(decoded, ExchangeClosedEmail)
        assert decoded.outcome is Outcome.EXPIRED
