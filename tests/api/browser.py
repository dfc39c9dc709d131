"""Pages in a real browser: Debian's Chromium driven by Playwright (never `playwright install`),
against the app served by uvicorn on a free port of this machine."""

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A missing Chromium skips with the reason outside CI, and fails in CI (`.ci/run` installs it).
NEEDS_CHROMIUM = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason=f"{CHROMIUM} is missing: apt-get install -y chromium (CI installs it)",
)


@asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[None]:
    """uvicorn in this event loop, so that the app shares the test's Temporal client."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, ws="none")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        server.should_exit = True
        await task
        raise RuntimeError(f"uvicorn did not start on port {port}")
    try:
        yield
    finally:
        server.should_exit = True
        await task
