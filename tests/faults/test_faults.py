"""Issue 12's fault suite: real processes (the Temporal dev server, `ce4big worker`, `ce4big api`,
PostgreSQL, an SMTP server), 30 exchanges driven through the API on a fast time scale, one fault
injected mid-flight. Afterwards every exchange must have reached the end its decisions call
for, its SQL timeline must hold each transition of its path exactly once, and the SMTP server
must have received each logical e-mail exactly once (by Message-ID) with the link the product
holds for it (tests/faults/checks.py)."""

import asyncio
import time
from pathlib import Path

import pytest

from bench.drive import Path as ExchangePath
from tests.faults.drive import Plan
from tests.faults.harness import fault_run
from tests.faults.stack import OwnPostgres
from tests.polling import eventually

pytestmark = [
    pytest.mark.faults,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.devserver,
]

# Share of all planned decisions answered when the fault strikes.
MID_FLIGHT = 0.35
WORKER_KILL_AT = 0.15
# Long enough for most e-mails in flight to fail twice (the activity retries after 2 s, then 4).
OUTAGE_SECONDS = 6.0


async def test_worker_killed_with_sigkill_and_restarted(tmp_path: Path) -> None:
    # A kill between the SMTP server's acceptance and the e-mail log's record sends that
    # e-mail again: see checks.verify.
    async with fault_run(tmp_path, "worker SIGKILL, restarted", copies_allowed=1) as run:
        # Early: what the worker was running then is retried only once its start-to-close
        # timeout has passed (two minutes for e-mail), while the other exchanges go on.
        await run.at_progress(WORKER_KILL_AT)
        await run.mark_fault()
        run.stack.worker.kill()
        await asyncio.sleep(2)
        await run.stack.processes.restart_worker(run.stack.worker)
        await run.finish()
        assert run.stack.worker.starts == 2


async def test_smtp_server_refuses_connections_then_recovers(tmp_path: Path) -> None:
    async with fault_run(tmp_path, "SMTP refuses connections 6 s") as run:
        await run.at_progress(MID_FLIGHT)
        await run.mark_fault()
        await run.stack.mail.close()
        await asyncio.sleep(OUTAGE_SECONDS)
        await run.stack.mail.open()
        retried = await run.email_attempts()
        run.note(f"{retried} send attempts refused")
        assert retried > 0, "no e-mail was attempted while the SMTP server refused connections"
        await run.finish()


async def test_smtp_server_answers_4xx_then_recovers(tmp_path: Path) -> None:
    async with fault_run(tmp_path, "SMTP answers 451 for 6 s") as run:
        await run.at_progress(MID_FLIGHT)
        await run.mark_fault()
        run.stack.mailbox.deferring = True
        await asyncio.sleep(OUTAGE_SECONDS)
        run.stack.mailbox.deferring = False
        deferred = run.stack.mailbox.deferred
        run.note(f"{deferred} messages answered 451")
        assert deferred > 0, "no e-mail was sent while the SMTP server answered 451"
        await run.finish()


async def test_temporal_dev_server_killed_with_sigkill_and_restarted(tmp_path: Path) -> None:
    fault = "Temporal dev server SIGKILL, restarted on its file"
    async with fault_run(tmp_path, fault, temporal_file=True) as run:
        await run.at_progress(MID_FLIGHT)
        await run.mark_fault()
        killed = time.monotonic()
        run.stack.temporal.child.kill()
        # Restarted at once, as a supervisor would: the worker's SDK retries what it reports
        # (a finished activity, say) for about 10 s, after which the report is dropped and
        # the activity waits out its timeout (two minutes for e-mail) to run again.
        await run.stack.temporal.start()
        run.note(f"down {time.monotonic() - killed:.1f} s")
        await run.finish()


async def test_postgresql_stopped_and_started(tmp_path: Path) -> None:
    postgres = OwnPostgres()
    try:
        await asyncio.to_thread(postgres.init)
        await asyncio.to_thread(postgres.start)
        fault = "PostgreSQL stopped 6 s"
        # The log's record of an e-mail accepted just before the stop fails: it is sent again.
        async with fault_run(tmp_path, fault, postgres=postgres, copies_allowed=1) as run:
            await run.at_progress(MID_FLIGHT)
            await run.mark_fault()
            await asyncio.to_thread(postgres.stop)
            probe = await run.driver.probe(f"/api/v1/exchanges/{run.ids()[0]}")
            await asyncio.sleep(OUTAGE_SECONDS)
            await asyncio.to_thread(postgres.start)
            failed = run.stack.worker.count_in_logs("Completing activity as failed")
            run.note(
                f"web app answered {probe} while it was down, {failed} activity attempts failed"
            )
            assert probe == 503, "the web app did not answer 503 without its database"
            assert failed > 0, "no activity met the stopped database"
            await run.finish()
    finally:
        await asyncio.to_thread(postgres.remove)


# The decision each path's burst is made of: a vetting, a withdrawal, a partner's acceptance
# through the single-use link of its e-mail.
BURST_STEPS = {
    ExchangePath.REJECTED: "vet",
    ExchangePath.WITHDRAWN: "withdraw",
    ExchangePath.COMPLETED: "accept",
}


class Burst:
    """Holds each exchange before its burst step until all are there, then lets them go."""

    def __init__(self) -> None:
        self.waiting = 0
        self.released = asyncio.Event()

    async def __call__(self, plan: Plan, step: str) -> None:
        if step != BURST_STEPS[plan.path]:
            return
        self.waiting += 1
        await self.released.wait()


async def test_web_app_killed_during_a_burst_of_decisions(tmp_path: Path) -> None:
    burst = Burst()
    async with fault_run(tmp_path, "web app SIGKILL in a burst", gate=burst) as run:
        await eventually(
            lambda: burst.waiting + sum(1 for p in run.plans if p.error) == len(run.plans),
            what="every exchange at its burst decision",
            seconds=120,
        )
        await run.mark_fault()
        before = run.driver.traffic.decisions
        burst.released.set()
        # Killed once a third of the burst is answered: the rest is in flight or queued.
        await run.driver.wait_for_decisions(before + len(run.plans) // 3)
        answered = run.driver.traffic.decisions - before
        run.stack.api.kill()
        run.note(f"killed with {answered}/{len(run.plans)} of the burst answered")
        await asyncio.sleep(1)
        await run.stack.processes.start_api()
        await run.finish()
        assert run.driver.traffic.retries > 0, "no decision was caught by the kill"
