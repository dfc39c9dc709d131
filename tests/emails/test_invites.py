from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from emails.contexts import Person, parse_invite
from emails.invites import build_invite, meeting_uid

PARIS = ZoneInfo("Europe/Paris")
ORGANIZER = Person(email="exchange@ce4big.example", name="CE4BIG Exchange")
ATTENDEES = [
    {"email": "claire@nantesgene.example", "name": "Claire Moreau"},
    {"email": "t.wisniewski@krakow-preclinical.example", "name": "Dr Tomasz Wiśniewski"},
    {"email": "broker@atlanpole.example", "name": "Luc Garnier"},
]
UID = meeting_uid(exchange_id=42, domain="ce4big.example")
# Paris moves to summer time on Sunday 29 March 2026.
BEFORE_CHANGE = datetime(2026, 3, 27, 10, 0, tzinfo=PARIS)
AFTER_CHANGE = datetime(2026, 3, 31, 10, 0, tzinfo=PARIS)


def _calendar(start: datetime, **changes: Any) -> Calendar:
    data: dict[str, Any] = {
        "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat(),
        "timezone": "Europe/Paris",
        "summary": "CE4BIG: NantesGene Therapeutics and Kraków Preclinical Services",
        "description": "GLP toxicology study for an AAV gene therapy candidate",
        "location": "https://meet.example.org/ce4big-42",
        "attendees": ATTENDEES,
        **changes,
    }
    ics = build_invite(
        invite=parse_invite(data),
        uid=UID,
        organizer=ORGANIZER,
        stamp=datetime(2026, 3, 20, 12, 0, tzinfo=UTC),
    )
    return Calendar.from_ical(ics)


def _event(calendar: Calendar) -> Event:
    (event,) = calendar.events
    return event


def _start(event: Event) -> datetime:
    start = event.start
    assert isinstance(start, datetime)
    return start


class TestBuildInvite:
    def test_request_parses_back_with_organizer_and_attendees(self) -> None:
        calendar = _calendar(AFTER_CHANGE)
        event = _event(calendar)

        assert calendar.method == "REQUEST"
        assert event.uid == UID == "ce4big-exchange-42-meeting@ce4big.example"
        assert event.sequence == 0
        assert event.status == "CONFIRMED"
        assert str(event.organizer) == "mailto:exchange@ce4big.example"
        assert [str(a) for a in event.attendees] == [f"mailto:{a['email']}" for a in ATTENDEES]
        assert [a.params["CN"] for a in event.attendees] == [a["name"] for a in ATTENDEES]
        assert event.location == "https://meet.example.org/ce4big-42"

    def test_times_carry_the_organisers_tzid_with_its_vtimezone(self) -> None:
        calendar = _calendar(AFTER_CHANGE)
        raw = calendar.to_ical().decode()

        assert "DTSTART;TZID=Europe/Paris:20260331T100000" in raw
        assert "DTEND;TZID=Europe/Paris:20260331T110000" in raw
        assert [tz.tz_name for tz in calendar.timezones] == ["Europe/Paris"]

    def test_local_time_holds_across_the_daylight_saving_change(self) -> None:
        before = _event(_calendar(BEFORE_CHANGE))
        after = _event(_calendar(AFTER_CHANGE, sequence=1))

        assert _start(before) == BEFORE_CHANGE
        assert _start(after) == AFTER_CHANGE
        assert _start(before).astimezone(UTC).hour == 9
        assert _start(after).astimezone(UTC).hour == 8

    def test_vtimezone_alone_gives_the_right_offsets(self) -> None:
        # What a client without the IANA database sees: only the VTIMEZONE.
        (vtimezone,) = _calendar(AFTER_CHANGE).timezones
        zone = vtimezone.to_tz()

        assert BEFORE_CHANGE.replace(tzinfo=zone).utcoffset() == timedelta(hours=1)
        assert AFTER_CHANGE.replace(tzinfo=zone).utcoffset() == timedelta(hours=2)

    def test_reschedule_keeps_the_uid_and_raises_the_sequence(self) -> None:
        first = _event(_calendar(BEFORE_CHANGE))
        moved = _event(_calendar(AFTER_CHANGE, sequence=1))

        assert moved.uid == first.uid
        assert moved.sequence > first.sequence

    def test_cancel_uses_method_cancel_on_the_same_uid(self) -> None:
        calendar = _calendar(AFTER_CHANGE, method="CANCEL", sequence=2)
        event = _event(calendar)

        assert calendar.method == "CANCEL"
        assert event.status == "CANCELLED"
        assert (event.uid, event.sequence) == (UID, 2)
        assert len(event.attendees) == len(ATTENDEES)

    def test_user_text_cannot_add_properties(self) -> None:
        calendar = _calendar(
            AFTER_CHANGE,
            summary="Tox\r\nATTENDEE:mailto:intruder@evil.example",
            description="Line one\nMETHOD:CANCEL",
            attendees=[{"email": "claire@nantesgene.example", "name": 'Claire\r\n"Moreau";X=1'}],
        )
        event = _event(calendar)

        assert calendar.method == "REQUEST"
        assert [str(a) for a in event.attendees] == ["mailto:claire@nantesgene.example"]
        assert event.summary == "Tox ATTENDEE:mailto:intruder@evil.example"
        assert event.description == "Line one\nMETHOD:CANCEL"
