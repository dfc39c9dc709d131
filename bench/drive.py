"""Exchanges driven as people drive them, over HTTP and the links in the e-mails.

The SME creates an exchange over the JSON API; every other step starts when its e-mail has
arrived at the run's SMTP server; brokers and the requester answer through the JSON API, the
partner through the links in its e-mails (`{BASE_URL}/t/<token>` in the text part). A run
subclasses `People` to say how a request is sent (retried or not, timed or not); the steps of
each path are `People.walk`. Used by bench/lifecycle.py and the fault suite (tests/faults/).
"""

import asyncio
import email
import re
import uuid
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, TypeVar

import httpx
from sqlalchemy import Engine, update

from ce4big.catalogue.csvio import parse_catalogue_csv, write_catalogue_csv
from ce4big.catalogue.store import upsert_organisations
from ce4big.db import session_scope
from ce4big.models import ApiToken, utcnow
from ce4big.security import create_api_token
from ce4big.settings import Settings
from ce4big.users import add_user

DAY = 86400.0
# A day of the lifecycle lasts 25 ms: the meeting a day ahead and the survey's delay pass in
# well under a second, so an exchange runs from request to outcome in seconds.
FAST_SCALE = DAY * 40
# Reminders and deadlines of the human steps, in real seconds: beyond any run, so that no
# reminder races a decision or joins the e-mails an exchange is expected to send.
HUMAN_HOLD_SECONDS = 3600.0
# The meeting a day ahead (and an hour more, so that its reminder gets a timer of its own).
MEETING_LEAD = timedelta(hours=25)

HUMAN_REMINDERS = (
    "vetting_reminder_days",
    "changes_reminder_days",
    "shortlist_reminder_days",
    "host_review_consent_days",
    "partner_reminder_days",
    "scheduling_reminder_days",
    "survey_reminder_days",
)
HUMAN_DEADLINES = (
    "vetting_escalation_days",
    "changes_expiry_days",
    "shortlist_escalation_days",
    "partner_deadline_days",
    "scheduling_deadline_days",
    "survey_close_days",
)

GLP_EN = (
    "Contract research organisation running GLP toxicology studies: repeated-dose toxicity, "
    "genotoxicity (Ames, micronucleus) and safety pharmacology for small molecules."
)
GLP_FR = (
    "CRO spécialisée en toxicologie réglementaire BPL : toxicité à doses répétées, "
    "génotoxicité (Ames, micronoyau) et pharmacologie de sécurité."
)
GLP_DE = (
    "Auftragsforschungsinstitut für GLP-Toxikologie: Toxizität bei wiederholter Gabe, "
    "Gentoxizität (Ames, Mikrokerntest) und Sicherheitspharmakologie."
)
REQUEST = {
    "title": "GLP toxicology package before first-in-human",
    "description": "We need a GLP repeated-dose toxicity study and a genotoxicity battery "
    "(Ames, micronucleus) for our small-molecule kinase inhibitor.",
    "partner_kinds": ["cro"],
    "required_certifications": ["GLP"],
    "cooperation_type": "service_agreement",
    "meeting_format": "video",
    "languages": ["en"],
}
# Partners in the three other clusters, so that the matcher's fairness rule (an organisation
# with open introductions is ranked after the others) spreads concurrent exchanges over several
# organisations and host brokers.
PARTNERS = [
    ("bm-cro", "biom", "Isar Tox GmbH", "DE", GLP_EN),
    ("bm-cro2", "biom", "Würm Safety Labs", "DE", GLP_DE),
    ("kr-cro", "klsk", "Wawel Tox", "PL", GLP_FR),
    ("kr-cro2", "klsk", "Vistula Preclinical", "PL", GLP_EN),
    ("at-cro", "atlanpole", "Loire Toxicologie", "FR", GLP_FR),
    ("at-cro2", "atlanpole", "Erdre Safety", "FR", GLP_EN),
]
SME = "anna@meuse-kinase.example"
HOME_BROKER = "broker@biowin.example"
HOST_BROKERS = {c: f"broker@{c}.example" for c in ("biom", "klsk", "atlanpole")}


def partner_email(organisation_id: str) -> str:
    return f"bd@{organisation_id}.example"


def seed(engine: Engine, *, touched: bool = False) -> dict[str, str]:
    """The catalogue through the real import path, one user per person and an API token each;
    `touched` marks the tokens as used a day ahead, so that no request touches them again."""
    rows: list[dict[str, Any]] = [
        {
            "id": org_id,
            "name": name,
            "cluster": cluster,
            "kind": "cro",
            "country": country,
            "city": "",
            "website": f"https://{org_id}.example",
            "description": description,
            "services": ["GLP toxicology", "genotoxicity"],
            "technologies": [],
            "therapeutic_areas": [],
            "modalities": ["small molecules"],
            "stages": ["preclinical"],
            "certifications": ["GLP"],
            "languages": ["en"],
            "contact_name": "Business development",
            "contact_email": partner_email(org_id),
            "accepting_new_projects": True,
        }
        for org_id, cluster, name, country, description in PARTNERS
    ]
    rows.append(
        {
            **rows[0],
            "id": "bw-sme",
            "name": "Meuse Kinase SA",
            "cluster": "biowin",
            "kind": "sme",
            "country": "BE",
            "website": "https://meuse-kinase.example",
            "description": "Small-molecule kinase inhibitors for solid tumours.",
            "certifications": [],
            "contact_email": "contact@meuse-kinase.example",
        }
    )
    people = [
        (SME, "sme", None, "bw-sme"),
        (HOME_BROKER, "broker", "biowin", None),
        *((address, "broker", cluster, None) for cluster, address in HOST_BROKERS.items()),
    ]
    with session_scope(engine) as session:
        upsert_organisations(
            session=session, rows=parse_catalogue_csv(write_catalogue_csv(rows).encode())
        )
        session.flush()
        tokens = {}
        for address, role, cluster, organisation in people:
            user = add_user(
                session=session,
                email=address,
                role=role,
                cluster_id=cluster,
                organisation_id=organisation,
                name=address.split("@")[0].title(),
            )
            tokens[address] = create_api_token(session=session, user=user, days=1)
        if touched:
            session.flush()
            session.execute(update(ApiToken).values(last_used_at=utcnow() + timedelta(days=1)))
    return tokens


def driven_settings(
    database_url: str, *, web_port: int, smtp_port: int, scale: float, **extra: Any
) -> Settings:
    """The product's settings for a driven run: the time `scale`, the human steps' reminders
    and deadlines beyond the run, no outcome wave, no per-client limits; `extra` on top."""
    held = HUMAN_HOLD_SECONDS * scale / DAY  # in days, before the scale divides it
    values: dict[str, Any] = {
        "ce4big_env": "development",
        "database_url": database_url,
        "base_url": f"http://127.0.0.1:{web_port}",
        "ce4big_host": "127.0.0.1",
        "ce4big_port": web_port,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_tls": False,
        "smtp_starttls": False,
        "temporal_task_queue": f"bench-{uuid.uuid4().hex[:8]}",
        "ce4big_time_scale": scale,
        # The outcome wave, months later, is its own workflow: not part of a lifecycle here.
        "outcome_wave_days": 0,
        # Every simulated person acts from 127.0.0.1: the per-client limits would throttle them.
        "decisions_per_client": 1_000_000,
        "link_actions_per_client": 1_000_000,
    }
    for name in HUMAN_REMINDERS:
        values[name] = held
    for name in HUMAN_DEADLINES:
        values[name] = 2 * held
    return Settings(_env_file=None, **(values | extra))


# ---------------------------------------------------------------------- e-mail

T = TypeVar("T")


class StepFailed(Exception):
    """A step of an exchange did not happen in time, or was refused for good."""


class Board(Generic[T]):
    """Values by key, awaited by whoever needs them; the first value of a key stays."""

    def __init__(self) -> None:
        self._values: dict[str, T] = {}
        self._waiters: dict[str, list[asyncio.Future[T]]] = defaultdict(list)

    def put(self, key: str, value: T) -> None:
        if key in self._values:
            return
        self._values[key] = value
        for waiter in self._waiters.pop(key, []):
            if not waiter.done():
                waiter.set_result(value)

    def find(self, key: str) -> T | None:
        return self._values.get(key)

    async def get(self, key: str, seconds: float) -> T:
        if key in self._values:
            return self._values[key]
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters[key].append(waiter)
        try:
            return await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            raise StepFailed(f"nothing for {key} within {seconds:.0f} s") from None


LINK = re.compile(r"^https?://\S+/t/(\S+?)\r?$", re.MULTILINE)
# Every e-mail of an exchange repeats its title, where the driver put `[<marker>]`.
MARKER = re.compile(r"\[([a-z]+-[0-9a-f]{8}-\d+)\]")


@dataclass(frozen=True)
class Delivery:
    message_id: str
    kind: str
    recipient: str
    marker: str | None
    token: str | None


@dataclass
class Mailbox:
    """The SMTP server's handler: every accepted message, filed by exchange marker, kind and
    recipient. While `deferring`, every message is answered 451 after its data (the sender
    must keep it and try again); refused connections are the listener's business."""

    deliveries: list[Delivery] = field(default_factory=list)
    kinds: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    unfiled: int = 0
    deferring: bool = False
    deferred: int = 0
    _board: Board[Delivery] = field(default_factory=Board)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        if self.deferring:
            self.deferred += 1
            return "451 4.3.0 Mailbox busy, try again later"
        raw = envelope.original_content or envelope.content or b""
        # The legacy parser: a tenth of the CPU of policy.default, on the run's own loop.
        message = email.message_from_bytes(raw)
        text_part = ""
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    text_part = payload.decode(part.get_content_charset() or "utf-8")
                break
        found = MARKER.search(text_part)
        links = LINK.findall(text_part)
        kind = str(message["X-CE4BIG-Kind"] or "")
        for recipient in envelope.rcpt_tos:
            delivery = Delivery(
                message_id=str(message["Message-ID"] or "").strip(),
                kind=kind,
                recipient=str(recipient).lower(),
                marker=found.group(1) if found else None,
                token=links[0] if links else None,
            )
            self.deliveries.append(delivery)
            if delivery.marker is None:
                self.unfiled += 1
                continue
            self.kinds[delivery.marker][kind] += 1
            self._board.put(f"{delivery.marker}:{kind}:{delivery.recipient}", delivery)
        return "250 2.0.0 Accepted"

    def find(self, marker: str, kind: str, recipient: str) -> Delivery | None:
        return self._board.find(f"{marker}:{kind}:{recipient.lower()}")

    async def wait(self, marker: str, kind: str, recipient: str, seconds: float) -> Delivery:
        """The first such e-mail, once it has arrived."""
        try:
            return await self._board.get(f"{marker}:{kind}:{recipient.lower()}", seconds)
        except StepFailed:
            raise StepFailed(f"no {kind} e-mail to {recipient} within {seconds:.0f} s") from None

    def copies(self) -> Counter[str]:
        return Counter(d.message_id for d in self.deliveries)


# ---------------------------------------------------------------------- one exchange


class Path(StrEnum):
    COMPLETED = "completed"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


@dataclass
class Trip:
    """One exchange on its way: what the driver has learnt of it, and what it waits for now
    (for the failure message of a stuck exchange)."""

    marker: str
    path: Path = Path.COMPLETED
    exchange_id: int | None = None
    partner: str | None = None
    partner_cluster: str | None = None
    doing: str = "create"


TripT = TypeVar("TripT", bound=Trip)


class People(ABC, Generic[TripT]):
    """The people of a run, acting on one exchange after another along its path."""

    def __init__(self, http: httpx.AsyncClient, tokens: dict[str, str], mailbox: Mailbox) -> None:
        self.http = http
        self.tokens = tokens
        self.mailbox = mailbox

    def auth(self, who: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}

    async def request(
        self,
        trip: TripT,
        method: str,
        path: str,
        *,
        who: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """A request that is not a decision, as `who`, answered with success."""
        return await self.send(trip, method, path, body, {**self.auth(who), **(headers or {})})

    @abstractmethod
    async def send(
        self, trip: TripT, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> httpx.Response:
        """What `request` sends, until it is answered with success."""

    @abstractmethod
    async def decide(
        self, trip: TripT, step: str, path: str, body: Any, *, who: str | None, event: str
    ) -> None:
        """A decision as `who`, or through an e-mail's link when `who` is None; `event` is the
        kind of the transition it records in the timeline (`<kind>:<side>` for a survey)."""

    @abstractmethod
    async def mail(self, trip: TripT, kind: str, recipient: str) -> Delivery:
        """The e-mail a step starts from, once it has arrived."""

    async def walk(self, trip: TripT) -> None:
        """From the request to the end of the trip's path."""
        created = await self.request(
            trip,
            "POST",
            "/api/v1/exchanges",
            who=SME,
            body={**REQUEST, "title": f"{REQUEST['title']} [{trip.marker}]"},
            # A create sent again finds the first by its key.
            headers={"Idempotency-Key": trip.marker},
        )
        trip.exchange_id = int(created.json()["id"])
        path = f"/api/v1/exchanges/{trip.exchange_id}"

        await self.mail(trip, "vetting_needed", HOME_BROKER)
        if trip.path == Path.REJECTED:
            verdict = {"decision": "reject", "note": "Outside the programme's scope."}
            await self.decide(
                trip, "vet", f"{path}/vetting", verdict, who=HOME_BROKER, event="vetting_reject"
            )
            return
        await self.decide(
            trip,
            "vet",
            f"{path}/vetting",
            {"decision": "approve"},
            who=HOME_BROKER,
            event="vetting_approve",
        )

        await self.mail(trip, "shortlist_needed", HOME_BROKER)
        if trip.path == Path.WITHDRAWN:
            await self.decide(trip, "withdraw", f"{path}/withdraw", None, who=SME, event="closed")
            return
        listed = await self.request(trip, "GET", f"{path}/candidates", who=HOME_BROKER)
        first = listed.json()[0]
        trip.partner, trip.partner_cluster = str(first["organisation_id"]), str(first["cluster"])
        shortlist = {"organisation_ids": [trip.partner]}
        await self.decide(
            trip, "shortlist", f"{path}/shortlist", shortlist, who=HOME_BROKER, event="shortlisted"
        )

        host = HOST_BROKERS[trip.partner_cluster]
        await self.mail(trip, "host_review_request", host)
        review = {"organisation_id": trip.partner, "decision": "endorse"}
        await self.decide(
            trip, "host_review", f"{path}/host-review", review, who=host, event="host_review_done"
        )

        partner = partner_email(trip.partner)
        invitation = await self.mail(trip, "introduction_request", partner)
        await self.decide(
            trip,
            "accept",
            f"/api/v1/actions/{invitation.token}",
            {"action": "accept"},
            who=None,
            event="introduction_accepted",
        )

        await self.mail(trip, "introduction_made", SME)
        start = (datetime.now(UTC) + MEETING_LEAD).replace(microsecond=0)
        slot = {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()}
        proposal = {"slots": [slot], "timezone": "Europe/Brussels", "mode": "video"}
        await self.decide(
            trip,
            "propose",
            f"{path}/meeting/proposals",
            proposal,
            who=SME,
            event="slots_proposed",
        )

        offer = await self.mail(trip, "slots_proposed", partner)
        pick = {"action": "pick_slot", "start": slot["start"]}
        await self.decide(
            trip,
            "pick",
            f"/api/v1/actions/{offer.token}",
            pick,
            who=None,
            event="meeting_scheduled",
        )

        answer: dict[str, Any] = {"action": "survey", "outcome": "cooperation_possible"}
        answer |= {"satisfaction": 5, "recommend": 9}
        surveys = [await self.mail(trip, "survey_invitation", a) for a in (SME, partner)]
        await asyncio.gather(
            *(
                self.decide(
                    trip,
                    "survey",
                    f"/api/v1/actions/{invitation.token}",
                    answer,
                    who=None,
                    event=f"survey_answered:{side}",
                )
                for side, invitation in zip(("requester", "partner"), surveys, strict=True)
            )
        )
