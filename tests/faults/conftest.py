"""The fault suite's one-line summaries at the end of the terminal report."""

import pytest

from tests.faults.harness import SUMMARIES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SUMMARIES:
        return
    terminalreporter.section("fault suite: fault | exchanges in flight | checked | result")
    for line in SUMMARIES:
        terminalreporter.write_line(line)
