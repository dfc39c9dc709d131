"""Waiting for a side effect itself (an e-mail at the sink, a row in SQL, a call recorded by a
fake), never for a stage that comes before it: the test machine may be busy."""

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT_SECONDS = 30.0
INTERVAL_SECONDS = 0.05


async def eventually(check: Callable[[], T], *, what: str, seconds: float = TIMEOUT_SECONDS) -> T:
    """Polls `check` until it returns something truthy and returns that; fails naming `what`
    and the last value seen once `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not there after {seconds:.0f} s (last: {value!r})")
        await asyncio.sleep(INTERVAL_SECONDS)
