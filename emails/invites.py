"""Calendar invites (RFC 5545 with the iTIP methods of RFC 5546) for exchange meetings.

Calendars match an update to the event they hold by UID and apply it only when its
SEQUENCE is higher, so the UID stays the same for the whole life of a meeting and the
workflow raises the sequence on every reschedule and on the cancel.
"""

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone, vCalAddress

from emails.contexts import Invite, Person
from emails.render import one_line

PRODID = "-//CE4BIG//CE4BIG Exchange//EN"


def meeting_uid(*, exchange_id: int, domain: str) -> str:
    return f"ce4big-exchange-{exchange_id}-meeting@{domain}"


@lru_cache(maxsize=64)
def _vtimezone(tzid: str, first_year: int, last_year: int) -> Timezone:
    # Only the transitions around the meeting: the full 1970-2038 history bloats every e-mail.
    return Timezone.from_tzid(
        tzid,
        first_date=datetime(first_year, 1, 1).date(),
        last_date=datetime(last_year, 12, 31).date(),
    )


def _address(person: Person, *, role: str | None = None) -> vCalAddress:
    return vCalAddress.new(
        person.email,
        cn=one_line(person.name) or None,
        role=role,
        partstat="NEEDS-ACTION" if role else None,
        # Replies would go to an organiser mailbox that nobody reads.
        rsvp=False if role else None,
    )


def build_invite(*, invite: Invite, uid: str, organizer: Person, stamp: datetime) -> bytes:
    zone = ZoneInfo(invite.timezone)
    start = invite.start.astimezone(zone)
    end = invite.end.astimezone(zone)
    cancelled = invite.method == "CANCEL"

    event = Event.new(
        uid=uid,
        sequence=invite.sequence,
        stamp=stamp.astimezone(ZoneInfo("UTC")),
        start=start,
        end=end,
        summary=one_line(invite.summary),
        description=invite.description or None,
        location=one_line(invite.location) or None,
        url=invite.url,
        organizer=_address(organizer),
        attendees=[_address(person, role="REQ-PARTICIPANT") for person in invite.attendees],
    )
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "TRANSPARENT" if cancelled else "OPAQUE")

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", invite.method)
    calendar.add_component(_vtimezone(invite.timezone, start.year - 1, (end + timedelta(1)).year))
    calendar.add_component(event)
    ical: bytes = calendar.to_ical()
    return ical
