"""Request bodies over a size limit are refused with 413 before the app reads them whole, and
decisions are counted per client in fixed windows (429 over the limit)."""

import json
import math
import threading
import time
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised while a body without Content-Length is read. An HTTPException, because FastAPI
    turns any other error met while it parses a body into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int]) -> None:
        self._app = app
        self._limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, counted_receive, tracking_send)
        except BodyTooLarge:
            # A chunked body ran over while code outside FastAPI's handlers was reading it.
            if not started:
                await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "payload_too_large",
                "message": f"the request body is larger than {limit} bytes",
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class FixedWindowCounter:
    """Requests per key in fixed windows, in this process's memory.

    In memory because a count in the database would cost a write on every decision (SQLite
    serialises them with the worker's): with N web processes a client may reach N times the
    limit, which still bounds what one client can send to Temporal."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int]] = {}
        self._window = 0

    def hit(self, key: str, *, limit: int, window_seconds: int) -> int | None:
        """Count one request; None while within the limit, else the seconds to wait."""
        now = self._clock()
        window = int(now // window_seconds)
        with self._lock:
            if window != self._window:
                # Once per window: the counts of past windows are spent.
                self._window = window
                self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
            seen, count = self._counts.get(key, (window, 0))
            count = count + 1 if seen == window else 1
            self._counts[key] = (window, count)
        if count <= limit:
            return None
        return max(1, math.ceil((window + 1) * window_seconds - now))
