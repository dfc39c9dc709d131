"""Who may call what: every route of the app (the JSON API, the web pages, the link pages, the
schema and its docs), for each kind of caller, against one exchange of the SME `bw-sme` (home
cluster biowin) at host review with its shortlisted candidate in biom. The table states the
class of answer each caller gets; a route of the app without a row fails the test by its name,
so a new route cannot ship without its rule.

The API answers a caller who may not do something 403, and one who may not even see the exchange
404, as it answers an exchange that does not exist. The web pages send a signed-out visitor to
the sign-in page (3xx). An e-mailed link is its own credential: whoever holds it gets the same
answer. A caller who may act gets 2xx (3xx after a web form), or 409 where the stage does not
allow it, or 422 where the rule lets it reach the check of its input."""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import Engine
from sqlmodel import Session, select

from api.main import create_app
from api.routes.pages import csrf_value
from bench.drive import REQUEST
from ce4big.catalogue.csvio import HEADER
from ce4big.models import ApiToken, utcnow
from ce4big.security import hash_token
from ce4big.websessions import csrf_token, redeem_sign_in_link, request_sign_in
from tests.api.test_schema_fuzz import at_stage, exchange_when, module_world
from tests.api.world import World
from tests.conftest import make_settings
from tests.factories import user_with_token
from tests.polling import eventually

CALLERS = (
    "anonymous",
    "sme_owner",
    "sme_other",
    "broker_home",
    "broker_host",
    "broker_other",
    "manager",
    "admin",
)
# The world's users: the owner's SME is in biowin, the other SME in atlanpole; the host broker
# is biom's, the other broker atlanpole's (no candidate there).
PEOPLE = {
    "sme_owner": "sme",
    "sme_other": "other_sme",
    "broker_home": "broker",
    "broker_host": "host_biom",
    "broker_other": "other_broker",
    "manager": "manager",
    "admin": "admin",
}
EMAILS = {
    "sme": "anna@meuse-kinase.example",
    "other_sme": "luc@erdre.example",
    "broker": "broker@biowin.example",
    "host_biom": "broker@biom.example",
    "other_broker": "broker@atlanpole.example",
    "manager": "manager@ce4big.example",
    "admin": "admin@ce4big.example",
}
ANSWERS = frozenset({"2xx", "3xx", "401", "403", "404", "409", "422"})
SIGNED_OUT_BASIS = "s" * 43
LINK = re.compile(r"/t/(\S+)\r?$", re.MULTILINE)


def rule(*answers: str) -> dict[str, frozenset[str]]:
    """One class of answer per caller, in the order of CALLERS; `2xx|409` allows either."""
    assert len(answers) == len(CALLERS)
    ruled = {c: frozenset(a.split("|")) for c, a in zip(CALLERS, answers, strict=True)}
    assert all(a <= ANSWERS for a in ruled.values()), ruled
    return ruled


# Shapes that most routes share.
EVERYONE = rule(*["2xx"] * 8)
SIGNED_IN = rule("401", *["2xx"] * 7)
STAFF = rule("401", "403", "403", "2xx", "2xx", "2xx", "2xx", "2xx")
ADMINS = rule("401", "403", "403", "403", "403", "403", "403", "2xx")
SEE_IT = rule("401", "2xx", "404", "2xx", "2xx", "404", "2xx", "2xx")
OWNER_ONLY = rule("401", "409", "404", "403", "403", "404", "403", "403")
PAGE_SIGNED_IN = rule("3xx", *["2xx"] * 7)
PAGE_STAFF = rule("3xx", "403", "403", "2xx", "2xx", "2xx", "2xx", "2xx")
PAGE_SEE_IT = rule("3xx", "2xx", "404", "2xx", "2xx", "404", "2xx", "2xx")
PAGE_OWNER_ONLY = rule("3xx", "409|422", "404", "403", "403", "404", "403", "403")
PAGE_HOME_BROKER = rule("3xx", "403", "403", "409", "403", "404", "403", "403")
# A decision already in force is answered as taken again (see "The HTTP API").
FORM_HOME_BROKER = rule("3xx", "403", "403", "3xx|409", "403", "404", "403", "403")
# A link allows only the actions it was sent for, whoever holds it.
NOT_THIS_LINK = rule(*["403"] * 8)


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    answers: dict[str, frozenset[str]]
    json: Any = None
    form: dict[str, Any] | None = None
    csv: bytes | None = None
    # Path parameter -> the name of the matrix's value it takes, where it is not its own name.
    use: dict[str, str] = field(default_factory=dict)


def _csv(*cells: str) -> bytes:
    row = [*cells, *[""] * (len(HEADER) - len(cells) - 1), "yes"]
    return (",".join(HEADER) + "\n" + ",".join(row) + "\n").encode()


_START = (datetime.now(UTC) + timedelta(days=10)).replace(hour=9, minute=0, second=0, microsecond=0)
SLOT = {"start": _START.isoformat(), "end": (_START + timedelta(hours=1)).isoformat()}
# In the order they are sent: reads, then decisions, then what closes the exchange, and the
# sign-out last.
ROWS = [
    Row("GET", "/healthz", EVERYONE),
    Row("GET", "/openapi.json", EVERYONE),
    Row("GET", "/docs", EVERYONE),
    Row("GET", "/docs/oauth2-redirect", EVERYONE),
    Row("GET", "/redoc", EVERYONE),
    Row("GET", "/api/v1/me", SIGNED_IN),
    Row("GET", "/api/v1/clusters", SIGNED_IN),
    Row("GET", "/api/v1/catalogue", SIGNED_IN),
    Row("GET", "/api/v1/catalogue/{organisation_id}", SIGNED_IN),
    Row("GET", "/api/v1/exchanges", SIGNED_IN),
    Row("GET", "/api/v1/exchanges/{exchange_id}", SEE_IT),
    Row(
        "GET",
        "/api/v1/exchanges/{exchange_id}/candidates",
        rule("401", "403", "404", "2xx", "2xx", "404", "2xx", "2xx"),
    ),
    Row("GET", "/api/v1/reports/funnel", STAFF),
    Row("GET", "/api/v1/reports/stages", STAFF),
    Row("GET", "/api/v1/reports/clusters", STAFF),
    Row("GET", "/api/v1/reports/outcomes", STAFF),
    Row("GET", "/api/v1/reports/exchanges.csv", STAFF),
    Row("GET", "/api/v1/users", ADMINS),
    Row("GET", "/api/v1/users/{user_id}/tokens", ADMINS),
    # The link is the credential: the bearer token does not change the answer.
    Row("GET", "/api/v1/actions/{token}", EVERYONE),
    Row("GET", "/t/{token}", EVERYONE),
    Row("GET", "/", rule("2xx", *["3xx"] * 7)),
    Row("GET", "/login", rule("2xx", *["3xx"] * 7)),
    Row("GET", "/login/{token}", rule(*["404"] * 8), use={"token": "unknown_sign_in"}),
    Row("GET", "/account", PAGE_SIGNED_IN),
    Row("GET", "/inbox", rule("3xx", "403", "403", "2xx", "2xx", "2xx", "403", "403")),
    Row("GET", "/catalogue", PAGE_STAFF),
    Row("GET", "/catalogue/import", PAGE_STAFF),
    Row("GET", "/catalogue/export.csv", PAGE_STAFF),
    Row("GET", "/catalogue/{organisation_id}", PAGE_STAFF),
    Row("GET", "/reports", PAGE_STAFF),
    Row("GET", "/reports/period", PAGE_STAFF),
    Row("GET", "/exchanges", PAGE_SIGNED_IN),
    Row("GET", "/exchanges/new", rule("3xx", "2xx", "2xx", *["403"] * 5)),
    Row("GET", "/exchanges/{exchange_id}", PAGE_SEE_IT),
    Row("GET", "/exchanges/{exchange_id}/vet", PAGE_HOME_BROKER),
    Row("GET", "/exchanges/{exchange_id}/shortlist", PAGE_HOME_BROKER),
    Row(
        "GET",
        "/exchanges/{exchange_id}/host-review",
        rule("3xx", "403", "403", "403", "2xx", "404", "403", "403"),
    ),
    Row(
        "GET",
        "/exchanges/{exchange_id}/withdraw",
        rule("3xx", "2xx", "404", "403", "403", "404", "403", "403"),
    ),
    Row(
        "GET",
        "/exchanges/{exchange_id}/cancel",
        rule("3xx", "403", "404", "403", "403", "404", "2xx", "2xx"),
    ),
    # Writes of the JSON API.
    Row(
        "POST",
        "/api/v1/exchanges",
        rule("401", "2xx", "2xx", *["403"] * 5),
        json=REQUEST,
    ),
    Row(
        "POST",
        "/api/v1/catalogue/import",
        # A row of biowin: the home broker's to import, not the other clusters' brokers'.
        rule("401", "403", "403", "2xx", "403", "403", "2xx", "2xx"),
        csv=_csv("matrix-bw", "Matrix SA", "biowin", "cro", "BE"),
    ),
    Row(
        "POST",
        "/api/v1/exchanges/{exchange_id}/vetting",
        rule("401", "403", "404", "2xx|409", "403", "404", "403", "403"),
        json={"decision": "approve"},
    ),
    Row("POST", "/api/v1/exchanges/{exchange_id}/amend", OWNER_ONLY, json={"note": "More."}),
    Row(
        "POST",
        "/api/v1/exchanges/{exchange_id}/shortlist",
        rule("401", "403", "404", "2xx|409", "403", "404", "403", "403"),
        json={"organisation_ids": ["bm-cro"]},
    ),
    Row(
        "POST",
        "/api/v1/exchanges/{exchange_id}/meeting/proposals",
        OWNER_ONLY,
        json={"slots": [SLOT], "timezone": "Europe/Brussels"},
    ),
    Row(
        "POST",
        "/api/v1/exchanges/{exchange_id}/meeting/pick",
        OWNER_ONLY,
        json={"start": SLOT["start"]},
    ),
    Row("POST", "/api/v1/exchanges/{exchange_id}/meeting/cancel", OWNER_ONLY, json={}),
    Row("POST", "/api/v1/exchanges/{exchange_id}/meeting/not-held", OWNER_ONLY, json={}),
    Row(
        "POST",
        "/api/v1/exchanges/{exchange_id}/survey",
        OWNER_ONLY,
        json={"outcome": "cooperation_possible"},
    ),
    Row("POST", "/api/v1/actions/{token}", NOT_THIS_LINK, json={"action": "accept"}),
    Row("POST", "/api/v1/users", ADMINS, json={"email": "new@matrix.example", "role": "manager"}),
    Row("DELETE", "/api/v1/users/{user_id}/tokens/{token_id}", ADMINS),
    Row("DELETE", "/api/v1/users/{user_id}/tokens", ADMINS),
    Row("POST", "/api/v1/users/{user_id}/deactivate", ADMINS),
    Row("POST", "/api/v1/users/{user_id}/activate", ADMINS),
    # Writes of the web pages, each with the caller's CSRF token.
    Row("POST", "/language", rule(*["3xx"] * 8), form={"language": "en", "next": "/"}),
    Row("POST", "/login", EVERYONE, form={"email": "nobody@matrix.example"}),
    Row("POST", "/login/{token}", rule(*["404"] * 8), form={}, use={"token": "unknown_sign_in"}),
    Row(
        "POST",
        "/account",
        rule(*["3xx"] * 8),
        form={"language": "en", "timezone": "Europe/Brussels"},
    ),
    Row("POST", "/account/tokens", PAGE_SIGNED_IN, form={"name": "matrix", "days": "1"}),
    # Another user's token: every signed-in caller is sent back to the account page, and the
    # token still works (checked at the end).
    Row(
        "POST",
        "/account/tokens/{token_id}/revoke",
        rule(*["3xx"] * 8),
        form={},
        use={"token_id": "bystander_token_id"},
    ),
    Row(
        "POST",
        "/catalogue/import",
        rule("3xx", "403", "403", "2xx", "403", "403", "2xx", "2xx"),
        form={"file": ("matrix.csv", _csv("matrix-bw", "Matrix SA", "biowin", "cro", "BE"))},
    ),
    Row(
        "POST",
        "/exchanges/new",
        rule("3xx", "3xx", "3xx", *["403"] * 5),
        form={
            "title": "Toxicology package",
            "description": "A GLP repeated-dose toxicity study for a small molecule.",
            "cooperation_type": "service_agreement",
            "meeting_format": "video",
            "languages": ["en"],
            "partner_kinds": ["cro"],
        },
    ),
    Row("POST", "/exchanges/{exchange_id}/vet", FORM_HOME_BROKER, form={"decision": "approve"}),
    Row("POST", "/exchanges/{exchange_id}/shortlist", FORM_HOME_BROKER, form={"pick": ["bm-cro"]}),
    Row("POST", "/exchanges/{exchange_id}/amend", PAGE_OWNER_ONLY, form={"note": "More."}),
    Row(
        "POST",
        "/exchanges/{exchange_id}/slots",
        PAGE_OWNER_ONLY,
        form={"slot_start_0": "2030-03-04T10:00", "timezone": "Europe/Brussels"},
    ),
    Row("POST", "/exchanges/{exchange_id}/pick", PAGE_OWNER_ONLY, form={"start": SLOT["start"]}),
    Row("POST", "/exchanges/{exchange_id}/not-held", PAGE_OWNER_ONLY, form={}),
    Row(
        "POST",
        "/exchanges/{exchange_id}/survey",
        PAGE_OWNER_ONLY,
        form={"outcome": "cooperation_possible"},
    ),
    Row("POST", "/t/{token}", NOT_THIS_LINK, form={"action": "accept"}),
    # The host broker's endorsement moves the exchange to the introduction.
    Row(
        "POST",
        "/api/v1/exchanges/{exchange_id}/host-review",
        rule("401", "403", "404", "403", "2xx", "404", "403", "403"),
        json={"organisation_id": "bm-cro", "decision": "endorse"},
    ),
    Row(
        "POST",
        "/exchanges/{exchange_id}/host-review",
        rule("3xx", "403", "403", "403", "2xx|3xx|409", "404", "403", "403"),
        form={"organisation_id": "bm-cro", "decision": "endorse"},
    ),
    # The requester withdraws; a manager's cancel then finds it closed.
    Row(
        "POST",
        "/exchanges/{exchange_id}/withdraw",
        rule("3xx", "3xx", "404", "403", "403", "404", "403", "403"),
        form={"reason": "Found a partner."},
    ),
    Row(
        "POST",
        "/api/v1/exchanges/{exchange_id}/withdraw",
        rule("401", "2xx|409", "404", "403", "403", "404", "403", "403"),
        json={},
    ),
    Row(
        "POST",
        "/exchanges/{exchange_id}/cancel",
        rule("3xx", "403", "404", "403", "403", "404", "409", "409"),
        form={"reason": "Out of scope."},
    ),
    Row(
        "POST",
        "/api/v1/exchanges/{exchange_id}/cancel",
        rule("401", "403", "404", "403", "403", "404", "409", "409"),
        json={},
    ),
    Row("POST", "/logout", rule(*["3xx"] * 8), form={}),
]


# Cells where the app does not answer as its row says, because of a defect in a file that another
# change is rewriting now: the answer it gives today, and why. The test fails when the answer
# changes, and asks for the entry to go once the row's answer is given.
KNOWN_DEFECTS: dict[tuple[str, str, str], tuple[str, str]] = {}


def routes_of_the_app() -> set[tuple[str, str]]:
    """(method, path) of every route that answers requests (HEAD goes with GET)."""
    app = create_app(make_settings())
    return {
        (method, str(route.path))
        for route in iter_route_contexts(app.routes)
        for method in route.methods or ()
        if method != "HEAD"
    }


def test_every_route_has_a_rule() -> None:
    ruled = [(row.method, row.path) for row in ROWS]
    assert len(ruled) == len(set(ruled)), "a route has two rows"
    missing = sorted(routes_of_the_app() - set(ruled))
    assert not missing, "routes without a rule in ROWS: " + ", ".join(
        f"{m} {p}" for m, p in missing
    )
    gone = sorted(set(ruled) - routes_of_the_app())
    assert not gone, "rules for routes the app no longer has: " + ", ".join(
        f"{m} {p}" for m, p in gone
    )


@dataclass
class Matrix:
    world: World
    # Path parameter -> value, and the values rows take in their place (`Row.use`).
    params: dict[str, Any]
    cookies: dict[str, str]


def _sessions(world: World) -> dict[str, str]:
    """A signed-in browser session for each caller, as the sign-in link gives it."""
    cookies = {}
    with Session(world.engine) as session:
        for caller, person in PEOPLE.items():
            ticket = request_sign_in(
                session=session,
                email=EMAILS[person],
                client=f"matrix-{caller}",
                settings=world.settings,
                now=utcnow(),
            )
            assert ticket is not None
            opened = redeem_sign_in_link(
                session=session, plain=ticket.token, settings=world.settings, now=utcnow()
            )
            cookies[caller] = opened.cookie
        session.commit()
    return cookies


@pytest.fixture(scope="module")
async def matrix(engine: Engine) -> AsyncIterator[Matrix]:
    # Sign-in requests are limited per address and client: the rows send them by the dozen.
    async with module_world(engine, sign_in_per_address=1000, sign_in_per_client=1000) as world:
        exchange_id = await world.create()
        path = f"/api/v1/exchanges/{exchange_id}"
        await at_stage(world, exchange_id, "vetting")
        approved = await world.post("broker", f"{path}/vetting", {"decision": "approve"})
        assert approved.status_code == 200, approved.text
        await exchange_when(world, exchange_id, lambda s: bool(s["candidates"]), "no candidates")
        shortlisted = await world.post(
            "broker", f"{path}/shortlist", {"organisation_ids": ["bm-cro"]}
        )
        assert shortlisted.status_code == 200, shortlisted.text
        await at_stage(world, exchange_id, "host_review")

        def host_link() -> str | None:
            for received in world.mail.received:
                message = received.parsed()
                text = message.get_body(preferencelist=("plain",))
                if message["X-CE4BIG-Kind"] == "host_review_request" and text is not None:
                    return str(LINK.findall(str(text.get_content()))[0])
            return None

        link = await eventually(host_link, what="the host review link")
        with Session(world.engine) as session:
            victim, _ = user_with_token(session, "victim@matrix.example", "manager")
            bystander, plain = user_with_token(session, "bystander@matrix.example", "admin")
            victim_token, bystander_token = (
                session.exec(select(ApiToken.id).where(ApiToken.user_id == user.id)).one()
                for user in (victim, bystander)
            )
        world.tokens["bystander"] = plain
        yield Matrix(
            world,
            {
                "exchange_id": exchange_id,
                "organisation_id": "bm-cro",
                "user_id": victim.id,
                "token_id": victim_token,
                "bystander_token_id": bystander_token,
                "token": link,
                "unknown_sign_in": "x" * 43,
            },
            _sessions(world),
        )


async def _send(matrix: Matrix, row: Row, caller: str) -> httpx.Response:
    world = matrix.world
    params = {**matrix.params, **{name: matrix.params[value] for name, value in row.use.items()}}
    url = row.path.format(**params)
    headers: dict[str, str] = {}
    if caller != "anonymous" and url.startswith("/api/"):
        headers["Authorization"] = f"Bearer {world.tokens[PEOPLE[caller]]}"
    basis = SIGNED_OUT_BASIS
    if not url.startswith("/api/"):
        if caller == "anonymous":
            headers["Cookie"] = f"ce4big_csrf={SIGNED_OUT_BASIS}"
        else:
            basis = matrix.cookies[caller]
            headers["Cookie"] = f"ce4big_session={basis}"
    if row.csv is not None:
        headers["Content-Type"] = "text/csv"
        return await world.client.request(row.method, url, content=row.csv, headers=headers)
    if row.form is not None:
        if url.startswith("/t/"):
            csrf = csrf_value(settings=world.settings, token_hash=hash_token(params["token"]))
            data = {**row.form, "csrf": csrf}
        else:
            data = {**row.form, "csrf_token": csrf_token(cookie=basis, settings=world.settings)}
        files = {k: v for k, v in data.items() if isinstance(v, tuple)}
        data = {k: v for k, v in data.items() if not isinstance(v, tuple)}
        return await world.client.request(
            row.method, url, data=data, files=files or None, headers=headers
        )
    return await world.client.request(row.method, url, json=row.json, headers=headers)


def _may_act(caller: str, answers: frozenset[str]) -> bool:
    # A web form's success is a redirect too, but the signed-out visitor's is to the sign-in.
    return bool(answers & {"2xx", "409", "422"}) or ("3xx" in answers and caller != "anonymous")


def _answer(status: int) -> str:
    return f"{status // 100}xx" if status < 400 else str(status)


async def test_each_caller_gets_what_the_table_says(matrix: Matrix) -> None:
    """Every row, each caller that may not act first (so that an allowed decision cannot hide
    a refusal); all the differences are reported at once."""
    wrong: list[str] = []
    for row in ROWS:
        callers = sorted(CALLERS, key=lambda c: _may_act(c, row.answers[c]))
        for caller in callers:
            response = await _send(matrix, row, caller)
            got = _answer(response.status_code)
            said = f"{row.method} {row.path} as {caller}: {response.status_code}"
            known = KNOWN_DEFECTS.get((row.method, row.path, caller))
            if known is not None and got in row.answers[caller]:
                wrong.append(f"{said} as its row says: remove it from KNOWN_DEFECTS")
            elif got not in ({known[0]} if known else row.answers[caller]):
                wrong.append(
                    f"{said}, expected {'|'.join(sorted(row.answers[caller]))}: "
                    f"{response.text[:160]!r}"
                )
    assert not wrong, "\n".join(wrong)
    me = await matrix.world.get("bystander", "/api/v1/me")
    assert me.status_code == 200, "a caller revoked another user's token from the account page"
