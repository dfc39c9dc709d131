from typing import Any

import pytest

from ce4big.mailerrors import EmailContextError
from emails.contexts import (
    KINDS,
    ActionContext,
    IntroductionRequest,
    SlotsProposed,
    choose_timezone,
    context_dict,
    parse_context,
    parse_invite,
)
from emails.samples import sample_context, sample_kinds


class TestParseContext:
    @pytest.mark.parametrize("kind", sorted(KINDS))
    def test_sample_of_every_kind_validates_and_survives_json(self, kind: str) -> None:
        context = parse_context(kind=kind, data=sample_context(kind))

        assert isinstance(context, KINDS[kind])
        assert parse_context(kind=kind, data=context_dict(context)) == context

    def test_every_kind_has_a_sample(self) -> None:
        assert set(sample_kinds()) == set(KINDS)

    def test_unknown_kind_is_refused(self) -> None:
        with pytest.raises(EmailContextError, match="unknown e-mail kind"):
            parse_context(kind="newsletter", data={})

    def test_missing_field_is_refused(self) -> None:
        data = sample_context("request_rejected")
        del data["reason"]

        with pytest.raises(EmailContextError, match="reason"):
            parse_context(kind="request_rejected", data=data)

    def test_unknown_field_is_refused(self) -> None:
        data = {**sample_context("request_approved"), "resaon": "typo"}

        with pytest.raises(EmailContextError, match="resaon"):
            parse_context(kind="request_approved", data=data)

    @pytest.mark.parametrize(
        "url", ["/t/abc", "javascript:alert(1)", "ftp://x.example/t/abc", "http://x/t/a b"]
    )
    def test_action_url_must_be_absolute_http(self, url: str) -> None:
        data = {**sample_context("survey_reminder"), "action_url": url}

        with pytest.raises(EmailContextError, match="action_url"):
            parse_context(kind="survey_reminder", data=data)

    def test_naive_datetime_is_refused(self) -> None:
        data = {**sample_context("vetting_reminder"), "waiting_since": "2026-03-13T09:12:00"}

        with pytest.raises(EmailContextError, match="waiting_since"):
            parse_context(kind="vetting_reminder", data=data)

    def test_slot_ending_before_it_starts_is_refused(self) -> None:
        slot = {"start": "2026-03-27T11:00:00+01:00", "end": "2026-03-27T10:00:00+01:00"}
        data = {**sample_context("slots_proposed"), "slots": [slot]}

        with pytest.raises(EmailContextError, match="end after"):
            parse_context(kind="slots_proposed", data=data)

    def test_unknown_time_zone_is_refused(self) -> None:
        data = {**sample_context("slots_proposed"), "timezone": "Europe/Atlantis"}

        with pytest.raises(EmailContextError, match="Atlantis"):
            parse_context(kind="slots_proposed", data=data)

    def test_introduction_request_has_no_contact_fields(self) -> None:
        fields = set(IntroductionRequest.model_fields)

        assert not {f for f in fields if "email" in f or "phone" in f or "contact" in f}

    def test_actionable_kinds_require_a_link(self) -> None:
        assert issubclass(SlotsProposed, ActionContext)
        assert SlotsProposed.model_fields["action_url"].is_required()


class TestParseInvite:
    def test_defaults_to_a_request_at_sequence_zero(self) -> None:
        invite = parse_invite(_invite())

        assert (invite.method, invite.sequence, invite.uid, invite.organizer) == (
            "REQUEST",
            0,
            None,
            None,
        )

    def test_needs_an_attendee(self) -> None:
        with pytest.raises(EmailContextError, match="attendees"):
            parse_invite({**_invite(), "attendees": []})


class TestChooseTimezone:
    def test_prefers_the_user_then_the_cluster_then_utc(self) -> None:
        assert choose_timezone("Europe/Warsaw", "Europe/Paris") == "Europe/Warsaw"
        assert choose_timezone(None, "Europe/Paris") == "Europe/Paris"
        assert choose_timezone("Mars/Olympus", "Europe/Berlin") == "Europe/Berlin"
        assert choose_timezone(None, None) == "UTC"


def _invite() -> dict[str, Any]:
    return {
        "start": "2026-03-31T10:00:00+02:00",
        "end": "2026-03-31T11:00:00+02:00",
        "timezone": "Europe/Paris",
        "summary": "CE4BIG meeting",
        "attendees": [{"email": "claire@nantesgene.example", "name": "Claire Moreau"}],
    }
