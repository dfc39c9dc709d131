"""The fault runs' people: each exchange walks one path of bench/drive.py whose end is known
in advance (most completed, some rejected at vetting, some withdrawn by the SME once the
shortlist is asked for), and their clients retry what a failure left unanswered."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.drive import SME, Delivery, Mailbox, Path, People, StepFailed, Trip
from bench.stack import connection_limits

# How long one step may take: a fault holds exchanges up, e.g. a killed worker's activities
# until their start-to-close timeout (two minutes for e-mail) has passed.
STEP_SECONDS = 240.0
HTTP_SECONDS = 20.0
RETRY_PAUSE = 0.25


def paths_for(count: int) -> list[Path]:
    """Two fifths completed (the longest path by far), the rest rejected or withdrawn."""
    cycle = [Path.COMPLETED, Path.REJECTED, Path.COMPLETED, Path.WITHDRAWN, Path.REJECTED]
    cycle += [Path.COMPLETED, Path.WITHDRAWN, Path.COMPLETED, Path.REJECTED, Path.WITHDRAWN]
    return [cycle[n % len(cycle)] for n in range(count)]


# How many decisions each path takes (the progress a fault waits for counts them).
DECISIONS = {Path.COMPLETED: 8, Path.REJECTED: 1, Path.WITHDRAWN: 3}


@dataclass
class Plan(Trip):
    number: int = 0
    decisions: int = 0
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


class Driver(People[Plan]):
    """The people of a fault run, whose clients retry what a failure left unanswered."""

    def __init__(
        self,
        *,
        base_url: str,
        tokens: dict[str, str],
        mailbox: Mailbox,
        gate: Gate = no_gate,
    ) -> None:
        http = httpx.AsyncClient(
            base_url=base_url,
            timeout=HTTP_SECONDS,
            limits=connection_limits(64),
        )
        super().__init__(http, tokens, mailbox)
        self._gate = gate
        self.run = uuid.uuid4().hex[:8]
        self.traffic = Traffic()
        self.progress = asyncio.Condition()

    async def aclose(self) -> None:
        await self.http.aclose()

    def plans(self, count: int) -> list[Plan]:
        return [
            Plan(f"fault-{self.run}-{n}", path, number=n) for n, path in enumerate(paths_for(count))
        ]

    async def send(
        self, trip: Plan, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> httpx.Response:
        response = await self._send(method, path, body, headers)
        assert response is not None
        return response

    async def _send(
        self,
        method: str,
        path: str,
        body: Any,
        headers: dict[str, str],
        *,
        link: bool = False,
        exchange_id: int | None = None,
    ) -> httpx.Response | None:
        """The response once the server answered it for good. Connection failures, timeouts
        and 429/502/503/504 are retried (after Retry-After, when given), as is 409 for a stage
        the workflow has not reached yet (its e-mail came first).

        None when an attempt left unanswered may have gone through: a link then found used or
        over, a decision then refused because the exchange has closed (a retried withdrawal,
        say). Whether it went through once, as it must, the timeline tells afterwards."""
        deadline = time.monotonic() + STEP_SECONDS
        # An attempt failed in a way that does not say whether the workflow took it.
        uncertain = False
        while True:
            reason, pause = "", RETRY_PAUSE
            try:
                response = await self.http.request(method, path, json=body, headers=headers)
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
        read = await self._send("GET", f"/api/v1/exchanges/{exchange_id}", None, self.auth(SME))
        return read is not None and read.json()["status"] == "closed"

    async def decide(
        self, trip: Plan, step: str, path: str, body: Any, *, who: str | None, event: str
    ) -> None:
        await self._gate(trip, step)
        trip.doing = f"POST {step}"
        link = who is None
        await self._send(
            "POST", path, body, self.auth(who), link=link, exchange_id=trip.exchange_id
        )
        trip.decisions += 1
        self.traffic.decisions += 1
        async with self.progress:
            self.progress.notify_all()

    async def mail(self, trip: Plan, kind: str, recipient: str) -> Delivery:
        trip.doing = f"waiting for {kind} to {recipient}"
        return await self.mailbox.wait(trip.marker, kind, recipient, STEP_SECONDS)

    async def drive(self, plan: Plan) -> None:
        try:
            await self.walk(plan)
            plan.finished = True
            plan.doing = "done"
        except StepFailed as exc:
            plan.error = f"exchange {plan.exchange_id} ({plan.path}): {exc}"
            plan.doing = "failed"
        async with self.progress:
            self.progress.notify_all()

    async def probe(self, path: str) -> int:
        """The status of one GET as the SME, or 0 when the connection failed."""
        try:
            response = await self.http.get(path, headers=self.auth(SME))
        except httpx.TransportError:
            return 0
        return response.status_code

    async def wait_for_decisions(self, count: int, *, seconds: float = STEP_SECONDS) -> None:
        """Until `count` decisions have been answered in all."""
        async with self.progress:
            await asyncio.wait_for(
                self.progress.wait_for(lambda: self.traffic.decisions >= count), seconds
            )
