"""One fault run: a migrated PostgreSQL database, the stack, the exchanges driven concurrently;
the test injects its fault mid-flight, then `finish` waits for every exchange to end and checks
what must hold. Each run leaves a one-line summary for the terminal report."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from bench.drive import seed
from ce4big.db import make_engine, upgrade_database
from ce4big.models import EmailLog
from tests.conftest import own_postgres_database
from tests.faults.checks import ended_count, stages_now, verify
from tests.faults.drive import DECISIONS, STEP_SECONDS, Driver, Gate, Plan, no_gate
from tests.faults.stack import OwnPostgres, Stack, running_stack
from tests.polling import eventually

EXCHANGES = 30
# The one-line summaries of this session's fault runs, for the terminal report (conftest.py).
SUMMARIES: list[str] = []


@dataclass
class FaultRun:
    fault: str
    stack: Stack
    engine: Engine
    driver: Driver
    plans: list[Plan]
    started: float = field(default_factory=time.monotonic)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    in_flight: int | None = None
    stages: str = ""
    notes: list[str] = field(default_factory=list)
    # See checks.verify: 1 for the faults that can strike between delivery and its record.
    copies_allowed: int = 0
    summarised: bool = False
    fault_at: float | None = None

    @property
    def total_decisions(self) -> int:
        return sum(DECISIONS[p.path] for p in self.plans)

    def ids(self) -> list[int]:
        return [p.exchange_id for p in self.plans if p.exchange_id is not None]

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self.driver.drive(p)) for p in self.plans]

    async def at_progress(self, share: float) -> None:
        """Until `share` of all planned decisions has been answered; fails if the exchanges
        got nowhere near (the fault would not be mid-flight)."""
        wanted = round(share * self.total_decisions)
        waiting = asyncio.create_task(self.driver.wait_for_decisions(wanted))
        either: list[asyncio.Future[Any]] = [waiting, asyncio.gather(*self.tasks)]
        done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if waiting not in done:
            waiting.cancel()
            errors = [p.error for p in self.plans if p.error]
            raise AssertionError(f"the exchanges ended before the fault: {errors[:3]}")
        await waiting

    async def mark_fault(self) -> None:
        """What is in flight as the fault strikes: every exchange not closed yet."""
        self.fault_at = time.monotonic()
        ids = self.ids()
        stages = await asyncio.to_thread(stages_now, self.engine, ids)
        self.in_flight = len(self.plans) - stages.get("closed", 0)
        self.stages = ", ".join(f"{s} {n}" for s, n in sorted(stages.items()) if s != "closed")
        if len(ids) < len(self.plans):
            self.stages += f", not created yet {len(self.plans) - len(ids)}"
        assert self.in_flight > 0, "no exchange in flight"

    def note(self, text: str) -> None:
        self.notes.append(text)

    async def email_attempts(self) -> int:
        """Send attempts beyond the first, over every logical e-mail of the run."""

        def count() -> int:
            with Session(self.engine) as session:
                extra = session.exec(
                    select(func.sum(EmailLog.attempts - 1)).where(
                        col(EmailLog.exchange_id).in_(self.ids())
                    )
                ).one()
            return int(extra or 0)

        return await asyncio.to_thread(count)

    async def finish(self) -> None:
        """Every driver done, every exchange closed, then the checks; one summary line."""
        await asyncio.gather(*self.tasks)
        ids = self.ids()
        with contextlib.suppress(AssertionError):
            await eventually(
                lambda: ended_count(self.engine, ids) == len(ids),
                what="every exchange ended",
                seconds=STEP_SECONDS,
            )
        if self.fault_at is not None:
            self.note(f"all ended {time.monotonic() - self.fault_at:.0f} s after the fault")
        self.stack.check_running()
        verdict = await asyncio.to_thread(
            verify,
            self.engine,
            self.stack.mailbox,
            self.plans,
            copies_allowed=self.copies_allowed,
        )
        seconds = time.monotonic() - self.started
        outcomes = ", ".join(f"{k} {n}" for k, n in sorted(verdict.outcomes.items()))
        checks = (
            f"ends [{outcomes}]; {verdict.transitions} transitions vs paths; "
            f"{verdict.emails} logical e-mails, {verdict.received} received, "
            f"{verdict.duplicates} copies of a Message-ID received again, "
            f"{verdict.links} links current; {verdict.figures} report counts as rebuilt"
        )
        if verdict.copies:
            self.note(
                f"{len(verdict.copies)} e-mails received twice with the same Message-ID and "
                f"link, let through: {', '.join(verdict.copies)}"
            )
        traffic = self.driver.traffic
        retried = ", ".join(f"{k} {n}" for k, n in sorted(traffic.reasons.items())) or "none"
        settled = traffic.settled_by_earlier_attempt
        if settled:
            self.note(f"{settled} retried decisions found already taken")
        notes = "; ".join([*self.notes, f"client retries: {retried}"])
        result = "passed" if not verdict.problems else f"FAILED ({len(verdict.problems)} problems)"
        line = (
            f"{self.fault} | {len(self.plans)} exchanges, {self.in_flight} in flight "
            f"({self.stages}) | {checks} | {notes} | {result} in {seconds:.0f} s"
        )
        SUMMARIES.append(line)
        self.summarised = True
        print(f"\n{line}", flush=True)
        if verdict.problems:
            shown = "\n".join(verdict.problems[:25])
            raise AssertionError(
                f"{self.fault}: {len(verdict.problems)} problems\n{shown}\n{self.stack.logs()}"
            )


@contextlib.asynccontextmanager
async def fault_run(
    folder: Path,
    fault: str,
    *,
    postgres: OwnPostgres | None = None,
    count: int = EXCHANGES,
    gate: Gate = no_gate,
    temporal_file: bool = False,
    copies_allowed: int = 0,
) -> AsyncIterator[FaultRun]:
    """The stack on a database of the test's own (on `postgres` when given, else on the
    server TEST_POSTGRES_URL names), and the exchanges started."""
    summarised = False
    try:
        with contextlib.ExitStack() as databases:
            if postgres is None:
                database_url = databases.enter_context(own_postgres_database("ce4big_faults"))
            else:
                database_url = postgres.url
            await asyncio.to_thread(upgrade_database, database_url)
            engine = make_engine(database_url, pool_size=2, max_overflow=4)
            databases.callback(engine.dispose)
            tokens = await asyncio.to_thread(seed, engine)
            async with running_stack(folder, database_url, temporal_file=temporal_file) as stack:
                driver = Driver(
                    base_url=stack.base_url, tokens=tokens, mailbox=stack.mailbox, gate=gate
                )
                run = FaultRun(fault, stack, engine, driver, driver.plans(count))
                run.copies_allowed = copies_allowed
                run.start()
                try:
                    yield run
                finally:
                    summarised = run.summarised
                    for task in run.tasks:
                        task.cancel()
                    await asyncio.gather(*run.tasks, return_exceptions=True)
                    await driver.aclose()
    except BaseException as exc:
        if not summarised:
            what = "skipped" if isinstance(exc, pytest.skip.Exception) else "FAILED"
            SUMMARIES.append(f"{fault} | {count} exchanges | {what}: {str(exc)[:200]}")
        raise
