"""The CSV export streams: 100,000 exchanges go out while the app holds one batch of them.

Memory is the interpreter's count of live blocks (`sys.getallocatedblocks`), sampled at every
chunk the app sends: it counts what is alive whatever the allocator did before (a process's
RSS can hide a list in memory freed by an earlier test), and unlike tracemalloc it does not
slow the export threefold. Every cell of every row is such a block; one large string is not,
which the count of chunks covers."""

import asyncio
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlmodel import Session

from api.main import create_app
from ce4big.db import make_engine, upgrade_database
from ce4big.models import Exchange
from ce4big.security import create_api_token
from ce4big.users import add_user
from tests.conftest import make_settings
from tests.factories import add_organisation

ROWS = 100_000
DAY0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
# Live blocks the app may add during the export. Streamed, it holds one batch of 500 rows and
# a 64 KB buffer: about 35,000 blocks. Built as a list first, the 100,000 rows of 29 cells are
# over 700,000 (65 MB, by tracemalloc).
BOUND_BLOCKS = 150_000


@pytest.fixture(scope="module")
def export_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A SQLite file with 100,000 minimal exchanges, and a manager's API token."""
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('export')) / 'app.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    with Session(engine) as session:
        add_organisation(session, "bw-sme", "biowin", country="BE")
        sme = add_user(
            session=session, email="sme@bw.example", role="sme", organisation_id="bw-sme"
        )
        manager = add_user(session=session, email="m@ce4big.example", role="manager")
        token = create_api_token(session=session, user=manager, days=1)
        session.commit()
        assert sme.id is not None
        requester = sme.id
    row: dict[str, Any] = {
        "description": "A request made in bulk for the export test.",
        "target_clusters": [],
        "partner_kinds": [],
        "required_certifications": [],
        "cooperation_type": "service_agreement",
        "meeting_format": "any",
        "languages": ["en"],
        "requester_id": requester,
        "organisation_id": "bw-sme",
        "home_cluster": "biowin",
        "status": "vetting",
    }
    with engine.begin() as connection:
        connection.execute(
            insert(Exchange),
            [
                {
                    **row,
                    "title": f"Exchange {n}",
                    "created_at": DAY0 + timedelta(minutes=n),
                    "updated_at": DAY0 + timedelta(minutes=n),
                }
                for n in range(ROWS)
            ],
        )
    engine.dispose()
    yield url, token


@dataclass
class Streamed:
    status: int = 0
    lines: int = 0
    chunks: int = 0
    largest_chunk: int = 0
    peak_blocks: int = 0


async def stream(app: Any, path: str, token: str) -> Streamed:
    """Drives the app as a server would, counting the body as it comes instead of keeping it
    (a test client keeps the whole body), and the live blocks at every chunk."""
    seen = Streamed()
    asked = False
    before = sys.getallocatedblocks()

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen.status = message["status"]
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            seen.lines += body.count(b"\n")
            seen.chunks += 1
            seen.largest_chunk = max(seen.largest_chunk, len(body))
            seen.peak_blocks = max(seen.peak_blocks, sys.getallocatedblocks() - before)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return seen


class TestExportMemory:
    async def test_100000_rows_stream_in_chunks_holding_a_bounded_number_of_blocks(
        self, export_database: tuple[str, str]
    ) -> None:
        url, token = export_database
        app = create_app(make_settings(url))
        async with app.router.lifespan_context(app):
            seen = await stream(app, "/api/v1/reports/exchanges.csv", token)
        assert seen.status == 200
        assert seen.lines == ROWS + 1  # the header
        assert seen.chunks > 100 and seen.largest_chunk < 256 * 1024
        assert seen.peak_blocks < BOUND_BLOCKS, seen
