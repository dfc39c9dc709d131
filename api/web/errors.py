"""Error pages of the web app, in the visitor's language and layout (the JSON API answers the
same errors as JSON; the pages behind e-mail links have their own texts)."""

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from api.templating import render
from api.web.visitor import Visitor, redirect, sign_in_url
from ce4big.i18n import N_, negotiate_language

# Paths that are not pages of the web app.
NOT_PAGES = ("/api/", "/docs", "/redoc", "/openapi.json", "/healthz", "/static/", "/t/", "/dev/")

# A decision sent and not confirmed in time (ce4big.errors.Pending); the e-mail link pages say
# the same.
PENDING_TEXTS = (
    N_("Not confirmed yet"),
    N_(
        "The service is busy: your answer was sent but not confirmed yet, so it may still be"
        " taken. Send it again in a minute to see the result; it will not be taken twice."
    ),
)
ERROR_TEXTS: dict[str, tuple[str, str]] = {
    "not_found": (
        N_("Page not found"),
        N_("This page does not exist, or it is not one you may see."),
    ),
    "forbidden": (
        N_("Not part of your role"),
        N_("Your account cannot do this. Nothing was recorded."),
    ),
    "link_used": (
        N_("This sign-in link has been used"),
        N_("Each link works once. Ask for a new one on the sign-in page."),
    ),
    "link_expired": (
        N_("This sign-in link has expired"),
        N_("Links work for a few minutes only. Ask for a new one on the sign-in page."),
    ),
    "csrf_failed": (
        N_("This form has expired"),
        N_("Reload the page and send the form again. Nothing was recorded."),
    ),
    "conflict": (
        N_("This step is no longer open"),
        N_("The exchange has moved on, so this could not be taken. Nothing was recorded."),
    ),
    "invalid": (
        N_("Please check what you entered"),
        N_("Nothing was recorded. Go back, correct the form and send it again."),
    ),
    "too_many_requests": (
        N_("Too many requests"),
        N_("Wait a few minutes, then try again."),
    ),
    "unavailable": (
        N_("The service is busy"),
        N_("Nothing was recorded. Please try again in a minute."),
    ),
    "pending": PENDING_TEXTS,
    "other": (N_("Something went wrong"), N_("Nothing was recorded. Please try again later.")),
}
# Errors whose page says all there is to say; others also show the technical detail.
PLAIN_CODES = frozenset({"not_found", "link_used", "link_expired", "csrf_failed"})


def is_web_page(request: Request) -> bool:
    return not str(request.scope.get("path", "")).startswith(NOT_PAGES)


def sign_in_redirect(request: Request) -> Response:
    return redirect(sign_in_url(request.url.path))


def web_error_page(request: Request, *, status_code: int, code: str, message: str) -> HTMLResponse:
    visitor: Visitor | None = getattr(request.state, "visitor", None)
    language = (
        visitor.language
        if visitor
        else negotiate_language(accept_language=request.headers.get("accept-language"))
    )
    heading, explanation = ERROR_TEXTS.get(code, ERROR_TEXTS["other"])
    return render(
        request,
        "web/error.html",
        {
            "visitor": visitor,
            "heading": heading,
            "explanation": explanation,
            "details": None if code in PLAIN_CODES else message,
        },
        language=language,
        status_code=status_code,
    )
