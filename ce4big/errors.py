"""Domain errors carry their HTTP status; one handler renders them (see api.main)."""

from typing import Any


class AppError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """Extra members of the error body (e.g. every bad row of a refused import)."""
        return {}

    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. Retry-After)."""
        return {}


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class Invalid(AppError):
    status_code = 422
    code = "invalid"


class TooManyRequests(AppError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class LinkUsed(Conflict):
    code = "link_used"


class LinkExpired(Conflict):
    code = "link_expired"


class LinkRevoked(Conflict):
    code = "link_revoked"


class Unavailable(AppError):
    status_code = 503
    code = "unavailable"


class Busy(Unavailable):
    """The exchange's workflow did not answer in time (no worker, or one too slow): the caller
    may retry, and a repeated decision is harmless."""

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class Pending(Busy):
    """A decision sent to the exchange's workflow that it did not answer in time. Temporal keeps
    it, so it may still be taken: the same decision sent again learns its result, and is not
    taken twice. Unlike Busy, "nothing was recorded" would not be true."""

    code = "pending"
