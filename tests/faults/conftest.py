"""No process of a fault run outlives its test; the runs' one-line summaries at the end of the
terminal report."""

from collections.abc import Iterator

import pytest

from bench.stack import LEFT_RUNNING
from tests.faults.harness import SUMMARIES


@pytest.fixture(autouse=True)
def nothing_left_running() -> Iterator[None]:
    """The runs stop their processes themselves; this catches a test whose coroutine never got
    that far (a pytest-timeout abandons it where it waits)."""
    yield
    for left in list(LEFT_RUNNING):
        left.stop_left()
    LEFT_RUNNING.clear()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SUMMARIES:
        return
    terminalreporter.section("fault suite: fault | exchanges in flight | checked | result")
    for line in SUMMARIES:
        terminalreporter.write_line(line)
