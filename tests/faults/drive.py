"""Exchanges driven as people drive them, over HTTP and the links in the e-mails, by clients
that retry what a failure left unanswered.

Each exchange follows one path whose end is known in advance: most are completed (vetting,
shortlist, host review, the partner's acceptance by link, slots, the partner's pick by link,
both surveys by link), some are rejected at vetting, some withdrawn by the SME once the
shortlist is asked for. Every step starts when its e-mail has arrived at the SMTP server.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx
from sqlalchemy import Engine

from ce4big.catalogue.csvio import parse_catalogue_csv, write_catalogue_csv
from ce4big.catalogue.store import upsert_organisations
from ce4big.db import session_scope
from ce4big.security import create_api_token
from ce4big.users import add_user
from tests.faults.stack import Mailbox

# How long one step may take: a fault holds exchanges up, e.g. a killed worker's activities
# until their start-to-close timeout (two minutes for e-mail) has passed.
STEP_SECONDS = 240.0
HTTP_SECONDS = 20.0
RETRY_PAUSE = 0.25
# The meeting a day ahead (and an hour more, so that its reminder gets a timer of its own).
MEETING_LEAD = timedelta(hours=25)

GLP = (
    "Contract research organisation running GLP toxicology studies: repeated-dose toxicity, "
    "genotoxicity (Ames, micronucleus) and safety pharmacology for small molecules."
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
# Partners in the three other clusters, so that the matcher's fairness rule spreads the
# concurrent exchanges over several organisations and host brokers.
PARTNERS = [
    ("bm-cro", "biom", "Isar Tox GmbH", "DE"),
    ("bm-cro2", "biom", "Würm Safety Labs", "DE"),
    ("kr-cro", "klsk", "Wawel Tox", "PL"),
    ("kr-cro2", "klsk", "Vistula Preclinical", "PL"),
    ("at-cro", "atlanpole", "Loire Toxicologie", "FR"),
    ("at-cro2", "atlanpole", "Erdre Safety", "FR"),
]
SME = "anna@meuse-kinase.example"
HOME_BROKER = "broker@biowin.example"
HOST_BROKERS = {c: f"broker@{c}.example" for c in ("biom", "klsk", "atlanpole")}


def partner_email(organisation_id: str) -> str:
    return f"bd@{organisation_id}.example"


class Path(StrEnum):
    COMPLETED = "completed"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


def paths_for(count: int) -> list[Path]:
    """Two fifths completed (the longest path by far), the rest rejected or withdrawn."""
    cycle = [Path.COMPLETED, Path.REJECTED, Path.COMPLETED, Path.WITHDRAWN, Path.REJECTED]
    cycle += [Path.COMPLETED, Path.WITHDRAWN, Path.COMPLETED, Path.REJECTED, Path.WITHDRAWN]
    return [cycle[n % len(cycle)] for n in range(count)]


# How many decisions each path takes (the progress a fault waits for counts them).
DECISIONS = {Path.COMPLETED: 8, Path.REJECTED: 1, Path.WITHDRAWN: 3}


def seed(engine: Engine) -> dict[str, str]:
    """The catalogue through the real import path, one user per person, an API token each."""
    rows: list[dict[str, Any]] = [
        {
            "id": org_id,
            "name": name,
            "cluster": cluster,
            "kind": "cro",
            "country": country,
            "city": "",
            "website": f"https://{org_id}.example",
            "description": GLP,
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
        for org_id, cluster, name, country in PARTNERS
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
    return tokens


class StepFailed(Exception):
    pass


@dataclass
class Plan:
    number: int
    path: Path
    marker: str
    exchange_id: int | None = None
    partner: str | None = None
    partner_cluster: str | None = None
    decisions: int = 0
    # What the driver waits for now, for the failure message of a stuck exchange.
    doing: str = "create"
    finished: bool = False
    error: str | None = None


@dataclass
class Traffic:
    """What the clients met on the way: retried requests, and why."""

    retries: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    # Decisions retried after an unanswered attempt, then found taken (a link used or over, an
    # exchange closed): the first attempt reached the workflow (checked in the timeline).
    settled_by_earlier_attempt: int = 0
    decisions: int = 0

    def note(self, reason: str) -> None:
        self.retries += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


Gate = Callable[[Plan, str], Awaitable[None]]


async def no_gate(_plan: Plan, _step: str) -> None:
    return None


class Driver:
    def __init__(
        self,
        *,
        base_url: str,
        tokens: dict[str, str],
        mailbox: Mailbox,
        gate: Gate = no_gate,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=HTTP_SECONDS,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self._tokens = tokens
        self._mail = mailbox
        self._gate = gate
        self.run = uuid.uuid4().hex[:8]
        self.traffic = Traffic()
        self.progress = asyncio.Condition()

    async def aclose(self) -> None:
        await self._http.aclose()

    def plans(self, count: int) -> list[Plan]:
        return [Plan(n, path, f"fault-{self.run}-{n}") for n, path in enumerate(paths_for(count))]

    def _auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._tokens[who]}"}

    async def _request(
        self,
        method: str,
        path: str,
        *,
        who: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        link: bool = False,
        exchange_id: int | None = None,
    ) -> httpx.Response | None:
        """The response once the server answered it for good. Connection failures, timeouts
        and 429/502/503/504 are retried (after Retry-After, when given), as is 409 for a stage
        the workflow has not reached yet (its e-mail came first).

        None when an attempt left unanswered may have gone through: a link then found used or
        over, a decision then refused because the exchange has closed (a retried withdrawal,
        say). Whether it went through once, as it must, the timeline tells afterwards."""
        all_headers = {**(self._auth(who) if who else {}), **(headers or {})}
        deadline = time.monotonic() + STEP_SECONDS
        # An attempt failed in a way that does not say whether the workflow took it.
        uncertain = False
        while True:
            reason, pause = "", RETRY_PAUSE
            try:
                response = await self._http.request(method, path, json=body, headers=all_headers)
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            else:
                code = ""
                if response.status_code == 409:
                    code = str(response.json().get("error", {}).get("code", ""))
                if response.status_code < 300:
                    return response
                if link and uncertain and code in ("link_used", "link_revoked"):
                    self.traffic.settled_by_earlier_attempt += 1
                    return None
                closed = code == "conflict" and uncertain and exchange_id is not None
                if closed and await self._closed(exchange_id or 0):
                    self.traffic.settled_by_earlier_attempt += 1
                    return None
                if response.status_code in (429, 502, 503, 504):
                    reason = f"HTTP {response.status_code}"
                    wait = response.headers.get("Retry-After", "")
                    pause = max(pause, float(wait) if wait.isdigit() else 0)
                elif response.status_code == 409 and code == "conflict":
                    reason = "HTTP 409 stage"
                else:
                    raise StepFailed(
                        f"{method} {path}: HTTP {response.status_code} {response.text[:300]}"
                    )
            if time.monotonic() > deadline:
                raise StepFailed(f"{method} {path}: still {reason} after {STEP_SECONDS:.0f} s")
            self.traffic.note(reason)
            # A refusal (409, 429) says the attempt was not taken; the others do not.
            uncertain = uncertain or not reason.startswith(("HTTP 409", "HTTP 429"))
            await asyncio.sleep(pause)

    async def _closed(self, exchange_id: int) -> bool:
        read = await self._request("GET", f"/api/v1/exchanges/{exchange_id}", who=SME)
        return read is not None and read.json()["status"] == "closed"

    async def _decide(
        self, plan: Plan, step: str, path: str, body: Any, *, who: str | None = None
    ) -> None:
        await self._gate(plan, step)
        plan.doing = f"POST {step}"
        await self._request(
            "POST", path, who=who, body=body, link=who is None, exchange_id=plan.exchange_id
        )
        plan.decisions += 1
        self.traffic.decisions += 1
        async with self.progress:
            self.progress.notify_all()

    async def _mail_for(self, plan: Plan, kind: str, recipient: str) -> str | None:
        plan.doing = f"waiting for {kind} to {recipient}"
        deadline = time.monotonic() + STEP_SECONDS
        while True:
            delivery = self._mail.find(plan.marker, kind, recipient)
            if delivery is not None:
                return delivery.token
            if time.monotonic() > deadline:
                raise StepFailed(f"no {kind} e-mail to {recipient} within {STEP_SECONDS:.0f} s")
            await asyncio.sleep(0.05)

    async def drive(self, plan: Plan) -> None:
        try:
            await self._drive(plan)
            plan.finished = True
            plan.doing = "done"
        except StepFailed as exc:
            plan.error = f"exchange {plan.exchange_id} ({plan.path}): {exc}"
            plan.doing = "failed"
        async with self.progress:
            self.progress.notify_all()

    async def _drive(self, plan: Plan) -> None:
        created = await self._request(
            "POST",
            "/api/v1/exchanges",
            who=SME,
            body={**REQUEST, "title": f"{REQUEST['title']} [{plan.marker}]"},
            # The create is retried like the rest: the key makes the retry find the first.
            headers={"Idempotency-Key": plan.marker},
        )
        assert created is not None
        plan.exchange_id = int(created.json()["id"])
        path = f"/api/v1/exchanges/{plan.exchange_id}"

        await self._mail_for(plan, "vetting_needed", HOME_BROKER)
        if plan.path == Path.REJECTED:
            verdict = {"decision": "reject", "note": "Outside the programme's scope."}
            await self._decide(plan, "vet", f"{path}/vetting", verdict, who=HOME_BROKER)
            return
        await self._decide(plan, "vet", f"{path}/vetting", {"decision": "approve"}, who=HOME_BROKER)

        await self._mail_for(plan, "shortlist_needed", HOME_BROKER)
        if plan.path == Path.WITHDRAWN:
            await self._decide(plan, "withdraw", f"{path}/withdraw", None, who=SME)
            return
        listed = await self._request("GET", f"{path}/candidates", who=HOME_BROKER)
        assert listed is not None
        first = listed.json()[0]
        plan.partner, plan.partner_cluster = str(first["organisation_id"]), str(first["cluster"])
        shortlist = {"organisation_ids": [plan.partner]}
        await self._decide(plan, "shortlist", f"{path}/shortlist", shortlist, who=HOME_BROKER)

        host = HOST_BROKERS[plan.partner_cluster]
        await self._mail_for(plan, "host_review_request", host)
        review = {"organisation_id": plan.partner, "decision": "endorse"}
        await self._decide(plan, "host_review", f"{path}/host-review", review, who=host)

        partner = partner_email(plan.partner)
        token = await self._mail_for(plan, "introduction_request", partner)
        await self._decide(plan, "accept", f"/api/v1/actions/{token}", {"action": "accept"})

        await self._mail_for(plan, "introduction_made", SME)
        start = (datetime.now(UTC) + MEETING_LEAD).replace(microsecond=0)
        slot = {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()}
        proposal = {"slots": [slot], "timezone": "Europe/Brussels", "mode": "video"}
        await self._decide(plan, "propose", f"{path}/meeting/proposals", proposal, who=SME)

        token = await self._mail_for(plan, "slots_proposed", partner)
        pick = {"action": "pick_slot", "start": slot["start"]}
        await self._decide(plan, "pick", f"/api/v1/actions/{token}", pick)

        answer: dict[str, Any] = {"action": "survey", "outcome": "cooperation_possible"}
        answer |= {"satisfaction": 5, "recommend": 9}
        tokens = [await self._mail_for(plan, "survey_invitation", a) for a in (SME, partner)]
        await asyncio.gather(
            *(self._decide(plan, "survey", f"/api/v1/actions/{token}", answer) for token in tokens)
        )

    async def probe(self, path: str) -> int:
        """The status of one GET as the SME, or 0 when the connection failed."""
        try:
            response = await self._http.get(path, headers=self._auth(SME))
        except httpx.TransportError:
            return 0
        return response.status_code

    async def wait_for_decisions(self, count: int, *, seconds: float = STEP_SECONDS) -> None:
        """Until `count` decisions have been answered in all."""
        async with self.progress:
            await asyncio.wait_for(
                self.progress.wait_for(lambda: self.traffic.decisions >= count), seconds
            )
