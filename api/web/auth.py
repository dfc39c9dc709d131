"""Signing in by e-mailed link, signing out, the home page, the language switch and the
account page (language, time zone, personal API tokens)."""

import logging
from typing import Annotated, Protocol
from zoneinfo import available_timezones

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session

from api.deps import EngineDep, SettingsDep, session_cookie, session_cookie_name
from api.templating import zone_choices
from api.web.visitor import (
    LANGUAGE_COOKIE,
    SIGNED_OUT_COOKIE,
    SignedInDep,
    Visitor,
    VisitorDep,
    checked_form,
    page,
    redirect,
    safe_next,
)
from ce4big.db import run_in_session
from ce4big.domain import CLUSTERS_BY_ID, LANGUAGES, Role
from ce4big.errors import TooManyRequests
from ce4big.i18n import N_, negotiate_language
from ce4big.models import User, utcnow
from ce4big.schemas import known_id
from ce4big.security import create_api_token, list_api_tokens, loggable, revoke_api_token
from ce4big.settings import Settings
from ce4big.websessions import (
    SignInTicket,
    check_sign_in_link,
    end_session,
    redeem_sign_in_link,
    request_sign_in,
)

logger = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

EMAIL_MAX = 254
TOKEN_NAME_MAX = 100
TOKEN_DAYS_MAX = 365
ROLE_HOMES = {Role.SME: "/exchanges", Role.BROKER: "/inbox"}


class SignInMailer(Protocol):
    """Sends the sign-in e-mail (emails/ does: the composition roots pass
    `emails.signin.SignInMailer`)."""

    async def send_sign_in(
        self, *, email: str, name: str, language: str, timezone: str, url: str, minutes: int
    ) -> None: ...


# ---------------------------------------------------------------- home and language


@router.get("/", name="home")
async def home(request: Request, visitor: VisitorDep, settings: SettingsDep) -> Response:
    if visitor.user is None:
        return page(
            request, visitor, settings, "web/home.html", {"next": "/", "email": "", "error": None}
        )
    return redirect(ROLE_HOMES.get(Role(visitor.user.role), "/exchanges"))


@router.post("/language")
async def switch_language(
    request: Request, visitor: VisitorDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    form = await checked_form(request, visitor, settings)
    chosen = form.get("language")
    language = chosen if isinstance(chosen, str) and chosen in LANGUAGES else visitor.language
    response = redirect(safe_next(form.get("next")))
    if visitor.user is not None:
        await _update_user(engine, visitor.user, language=language)
    else:
        response.set_cookie(
            LANGUAGE_COOKIE, language, max_age=365 * 86400, httponly=True, samesite="lax"
        )
    return response


async def _update_user(engine: Engine, user: User, **values: str) -> None:
    user_id = user.id

    def update(session: Session) -> None:
        row = session.get(User, user_id)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)
        session.add(row)

    await run_in_session(engine, update)


# ---------------------------------------------------------------- signing in and out


def _login_page(
    request: Request,
    visitor: Visitor,
    settings: Settings,
    *,
    next_path: str,
    email: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        visitor,
        settings,
        "web/login.html",
        {"next": next_path, "email": email, "error": error},
        status_code=status_code,
    )


@router.get("/login", name="login")
async def login_form(
    request: Request,
    visitor: VisitorDep,
    settings: SettingsDep,
    next_path: Annotated[str, Query(alias="next", max_length=500)] = "/",
) -> Response:
    if visitor.user is not None:
        return redirect(safe_next(next_path))
    return _login_page(request, visitor, settings, next_path=safe_next(next_path))


@router.post("/login")
async def ask_for_link(
    request: Request,
    visitor: VisitorDep,
    engine: EngineDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> Response:
    form = await checked_form(request, visitor, settings)
    email = str(form.get("email") or "").strip()
    next_path = safe_next(form.get("next"))
    if "@" not in email or len(email) > EMAIL_MAX or any(c.isspace() for c in email):
        return _login_page(
            request,
            visitor,
            settings,
            next_path=next_path,
            email=email[:EMAIL_MAX],
            error=N_("Enter your e-mail address, like name@example.org."),
            status_code=422,
        )
    client = request.client.host if request.client else "unknown"
    try:
        ticket = await run_in_session(
            engine,
            lambda session: request_sign_in(
                session=session, email=email, client=client, settings=settings, now=utcnow()
            ),
        )
    except TooManyRequests as exc:
        response = _login_page(
            request,
            visitor,
            settings,
            next_path=next_path,
            email=email,
            error=N_("Too many sign-in requests. Wait a few minutes, then ask again."),
            status_code=429,
        )
        response.headers.update(exc.headers())
        return response
    if ticket is not None:
        # After the answer: a known and an unknown address take the same time to answer.
        background.add_task(_send_link, request, ticket, visitor.language, next_path, settings)
    return page(request, visitor, settings, "web/login_sent.html", {"email": email})


async def _send_link(
    request: Request, ticket: SignInTicket, language: str, next_path: str, settings: Settings
) -> None:
    mailer: SignInMailer | None = request.app.state.sign_in_mailer
    user = ticket.user
    cluster = CLUSTERS_BY_ID.get(user.cluster_id or "")
    url = f"{settings.base_url}/login/{ticket.token}"
    if next_path != "/":
        url += "?next=" + next_path
    if mailer is None:
        logger.warning("no sign-in mailer configured: the link for user %s was not sent", user.id)
        return
    try:
        await mailer.send_sign_in(
            email=user.email,
            name=user.name,
            language=negotiate_language(
                user.language, language, cluster.language if cluster else None
            ),
            timezone=user.timezone or (cluster.timezone if cluster else "UTC"),
            url=url,
            minutes=settings.sign_in_link_minutes,
        )
    except Exception as exc:
        # The person sees the same page either way and can ask again; the log has the cause,
        # without the address (nor a traceback, whose messages may carry it).
        cause = loggable(str(exc), secret=settings.secret_key.get_secret_value())
        logger.error(
            "the sign-in e-mail to user %s could not be sent (%s): %s",
            user.id,
            type(exc).__name__,
            cause,
        )


@router.get("/login/{token}", name="login_confirm")
async def confirm_form(
    request: Request,
    token: str,
    visitor: VisitorDep,
    engine: EngineDep,
    settings: SettingsDep,
    next_path: Annotated[str, Query(alias="next", max_length=500)] = "/",
) -> Response:
    """Shows whom the link signs in; only the button's POST uses it (mail scanners GET)."""
    user = await run_in_session(
        engine, lambda session: check_sign_in_link(session=session, plain=token, now=utcnow())
    )
    return page(
        request,
        visitor,
        settings,
        "web/login_confirm.html",
        {"email": user.email, "token": token, "next": safe_next(next_path)},
    )


@router.post("/login/{token}")
async def sign_in(
    request: Request, token: str, visitor: VisitorDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    form = await checked_form(request, visitor, settings)
    opened = await run_in_session(
        engine,
        lambda session: redeem_sign_in_link(
            session=session, plain=token, settings=settings, now=utcnow()
        ),
    )
    response = redirect(safe_next(form.get("next")))
    response.set_cookie(
        session_cookie_name(settings),
        opened.cookie,
        max_age=settings.session_absolute_hours * 3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.base_url.startswith("https://"),
    )
    response.delete_cookie(SIGNED_OUT_COOKIE)
    return response


@router.post("/logout")
async def sign_out(
    request: Request, visitor: VisitorDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    await checked_form(request, visitor, settings)
    cookie = session_cookie(request, settings)
    if cookie is not None:
        await run_in_session(
            engine, lambda session: end_session(session=session, cookie=cookie, now=utcnow())
        )
    response = redirect("/")
    response.delete_cookie(session_cookie_name(settings), path="/")
    return response


# ---------------------------------------------------------------- account


async def _account_page(
    request: Request,
    visitor: Visitor,
    engine: EngineDep,
    settings: Settings,
    *,
    new_token: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    assert visitor.user is not None and visitor.user.id is not None
    user_id = visitor.user.id
    tokens = await run_in_session(
        engine, lambda session: list_api_tokens(session=session, user_id=user_id)
    )
    return page(
        request,
        visitor,
        settings,
        "web/account.html",
        {
            "zones": zone_choices(visitor.timezone),
            "tokens": tokens,
            "now": utcnow(),
            "new_token": new_token,
            "error": error,
            "max_days": TOKEN_DAYS_MAX,
            "default_days": settings.api_token_days,
        },
        status_code=status_code,
    )


@router.get("/account", name="account")
async def account(
    request: Request, visitor: SignedInDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    return await _account_page(request, visitor, engine, settings)


@router.post("/account")
async def save_account(
    request: Request, visitor: SignedInDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    form = await checked_form(request, visitor, settings)
    language = form.get("language")
    zone = str(form.get("timezone") or "")
    if language not in LANGUAGES or zone not in available_timezones():
        return await _account_page(
            request,
            visitor,
            engine,
            settings,
            error=N_("Choose a language and a time zone from the lists."),
            status_code=422,
        )
    assert visitor.user is not None
    await _update_user(engine, visitor.user, language=str(language), timezone=zone)
    return redirect("/account")


@router.post("/account/tokens")
async def create_token(
    request: Request, visitor: SignedInDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    form = await checked_form(request, visitor, settings)
    name = str(form.get("name") or "").strip()
    days_text = str(form.get("days") or "")
    days = int(days_text) if days_text.isdigit() else 0
    if not name or len(name) > TOKEN_NAME_MAX or not 1 <= days <= TOKEN_DAYS_MAX:
        return await _account_page(
            request,
            visitor,
            engine,
            settings,
            error=N_("Give the token a name and a validity of 1 to 365 days."),
            status_code=422,
        )
    user = visitor.user
    assert user is not None
    plain = await run_in_session(
        engine, lambda session: create_api_token(session=session, user=user, days=days, name=name)
    )
    # Shown once: only its hash is stored.
    return await _account_page(request, visitor, engine, settings, new_token=plain)


@router.post("/account/tokens/{token_id}/revoke")
async def revoke_token(
    request: Request,
    token_id: int,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    await checked_form(request, visitor, settings)
    assert visitor.user is not None and visitor.user.id is not None
    user_id = visitor.user.id
    known_id(token_id, "token")
    await run_in_session(
        engine,
        lambda session: revoke_api_token(
            session=session, user_id=user_id, token_id=token_id, now=utcnow()
        ),
    )
    return redirect("/account")
