"""Schemathesis over `/openapi.json`: every operation, with the bearer token of each role, on
generated valid and invalid input, against the app served in this process with a worker on
Temporal's test server and a real SMTP server, on SQLite and on PostgreSQL. No answer may be a
5xx, and every answer must be one the schema documents: status code, content type, headers and
body.

The app is served by uvicorn in the test's event loop (it shares the test's Temporal client with
the worker), and the generated requests travel over HTTP from a thread while that loop serves
them: schemathesis sends synchronously, and sending from the loop itself would block the worker
and the app."""

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.errors import FailureGroup
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, col, select
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from bench.stack import free_port
from ce4big.catalogue.csvio import HEADER
from ce4big.models import ApiToken, User
from ce4big.searchattributes import add_request
from tests.api.world import World, running_world
from tests.conftest import KEEP_TABLES, make_settings, venv_binary
from tests.factories import user_with_token
from tests.polling import eventually

ROLES = ("sme", "broker", "manager", "admin")
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# Examples per operation, role and mode: 35 operations x 4 roles x 2 modes x 2 databases, about
# 2 minutes on a CI machine of two cores.
MAX_EXAMPLES = 10
CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    # In the negative mode: input that breaks the schema is refused with a 4xx.
    "negative_data_rejection",
)
CHECKS = [getattr(schemathesis.checks, name) for name in CHECK_NAMES]
STATUS_CHECK = schemathesis.checks.status_code_conformance
LINK = re.compile(r"/t/(\S+)\r?$", re.MULTILINE)
UNKNOWN_ID = 987_654_321
DECISIONS = "/api/v1/exchanges/{exchange_id}/"


@dataclass(frozen=True)
class KnownDefect:
    """A defect in a file outside this test's change (another one is rewriting it): what it is
    and where, the statuses its operations answer without documenting them (still checked for
    5xx, not against the schema), the cases that meet it (not sent) or the warning it raises.
    Remove the entry once it is fixed."""

    what: str
    applies: Callable[[str, str], bool]
    undocumented: frozenset[int] = frozenset()
    meets: Callable[[Case[Any]], bool] | None = None
    # The warning it raises, ignored in this module (a 500 here, where warnings are errors).
    warning: str | None = None


KNOWN_DEFECTS: tuple[KnownDefect, ...] = ()


pytestmark = [
    pytest.mark.slow,
    # Schemathesis's negative mode draws from `random` inside a strategy (its own code, not the
    # app's); Hypothesis deprecates that.
    pytest.mark.filterwarnings(
        "ignore:Do not use the `random` module inside strategies"
        ":hypothesis.errors.HypothesisDeprecationWarning"
    ),
    *(pytest.mark.filterwarnings(f"ignore:{d.warning}") for d in KNOWN_DEFECTS if d.warning),
]


@dataclass
class Fuzzed:
    world: World
    base_url: str
    schema: Any
    # Path parameter -> values that name real objects (and one that names none).
    seeds: dict[str, list[Any]]
    # Accounts the fuzzed roles act with: a generated user id may not revoke or deactivate them.
    protected_users: frozenset[int]
    # The admin's own account: seeded only where acting on it is refused (deactivation, 409).
    admin_id: int
    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # (operation, role) -> how many answers of each status it got.
    answers: dict[tuple[str, str], Counter[int]] = field(default_factory=dict)


async def exchange_when(
    world: World, exchange_id: int, ready: Callable[[dict[str, Any]], bool], what: str
) -> None:
    async def state() -> dict[str, Any]:
        body = (await world.get("manager", f"/api/v1/exchanges/{exchange_id}")).json()
        return dict(body.get("state") or {})

    deadline = time.monotonic() + 30
    seen = await state()
    while not (seen and ready(seen)):
        assert time.monotonic() < deadline, f"exchange {exchange_id}: {what}: {seen}"
        await asyncio.sleep(0.05)
        seen = await state()


async def at_stage(world: World, exchange_id: int, stage: str) -> None:
    await exchange_when(world, exchange_id, lambda s: s["stage"] == stage, f"not at {stage}")


async def _seed(world: World) -> tuple[dict[str, list[Any]], frozenset[int], int]:
    """The SME's exchange at host review with a candidate in biom, the SME's exchange at
    vetting, another SME's exchange, the links e-mailed for them, and a user that no fuzzed
    role acts with, for the admin endpoints."""
    hosted = await world.create()
    await at_stage(world, hosted, "vetting")
    path = f"/api/v1/exchanges/{hosted}"
    approved = await world.post("broker", f"{path}/vetting", {"decision": "approve"})
    assert approved.status_code == 200, approved.text
    await exchange_when(
        world, hosted, lambda s: s["stage"] == "matching" and s["candidates"], "no candidates"
    )
    shortlisted = await world.post("broker", f"{path}/shortlist", {"organisation_ids": ["bm-cro"]})
    assert shortlisted.status_code == 200, shortlisted.text
    await at_stage(world, hosted, "host_review")
    waiting = await world.create()
    foreign = await world.create("other_sme")
    await at_stage(world, foreign, "vetting")

    def links() -> list[str]:
        found = set()
        for received in world.mail.received:
            text = received.parsed().get_body(preferencelist=("plain",))
            found.update(LINK.findall(str(text.get_content()) if text else ""))
        # Three requests to vet, a shortlist to build and a host review.
        return sorted(found) if len(found) >= 5 else []

    tokens = await eventually(links, what="the links e-mailed to the brokers")
    with Session(world.engine) as session:
        victim, _ = user_with_token(session, "victim@meuse-kinase.example", "sme", None, "bw-sme")
        assert victim.id is not None
        token_id = session.exec(select(ApiToken.id).where(ApiToken.user_id == victim.id)).one()
        admin_id = session.exec(select(User.id).where(User.email == "admin@ce4big.example")).one()
        others = session.exec(select(col(User.id)).where(User.id != victim.id)).all()
    assert admin_id is not None and token_id is not None
    seeds: dict[str, list[Any]] = {
        "exchange_id": [hosted, waiting, foreign, UNKNOWN_ID],
        "user_id": [victim.id, UNKNOWN_ID],
        "token_id": [token_id, UNKNOWN_ID],
        "organisation_id": ["bm-cro", "bw-sme", "no-such-organisation"],
        "token": [*tokens, "x" * 43],
    }
    return seeds, frozenset(i for i in others if i is not None), admin_id


@asynccontextmanager
async def module_world(engine: Engine, **overrides: Any) -> AsyncIterator[World]:
    """A world for a whole module: a Temporal test server of its own, the limits on decisions
    and links lifted (they have tests of their own; here they would only answer 429), and the
    database emptied afterwards of all but reference data, as the `db` fixture does per test."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server")
    )
    await env.client.operator_service.add_search_attributes(add_request(env.client.namespace))
    try:
        async with running_world(
            engine,
            env,
            decisions_per_client=1_000_000,
            link_actions_per_client=1_000_000,
            **overrides,
        ) as world:
            yield world
    finally:
        await env.shutdown()
        tables = [t for t in reversed(SQLModel.metadata.sorted_tables) if t.name not in KEEP_TABLES]
        with engine.begin() as connection:
            for table in tables:
                connection.execute(table.delete())


@pytest.fixture(scope="module")
async def fuzzed(engine: Engine) -> AsyncIterator[Fuzzed]:
    """One world per database for the module, served by uvicorn on a free port."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    async with module_world(engine, http_port=port) as world:
        seeds, protected, admin_id = await _seed(world)
        schema = await asyncio.to_thread(schemathesis.openapi.from_url, f"{base_url}/openapi.json")
        fuzzed = Fuzzed(world, base_url, schema, seeds, protected, admin_id)
        yield fuzzed
        print(f"\nschemathesis on {engine.dialect.name}, answers by operation and role:")
        for (operation, role), answers in fuzzed.answers.items():
            print(f"  {operation} as {role}: {dict(sorted(answers.items()))}")
        total = sum(sum(a.values()) for a in fuzzed.answers.values())
        print(
            f"{len(OPERATIONS)} operations x {len(ROLES)} roles, {total} requests, "
            f"{len(fuzzed.failures)} distinct failures"
        )


def _operations() -> list[tuple[str, str]]:
    """Every operation of the schema; the decisions on exchanges last, since they withdraw and
    cancel the seeded exchanges and so end the steps that the seeded links are for."""
    spec = create_app(make_settings()).openapi()
    found = [(m.upper(), path) for path, methods in spec["paths"].items() for m in methods]
    return sorted(found, key=lambda op: op[0] == "POST" and op[1].startswith(DECISIONS))


OPERATIONS = _operations()


def _defects(method: str, path: str) -> list[KnownDefect]:
    return [d for d in KNOWN_DEFECTS if d.applies(method, path)]


def _strategy(fuzzed: Fuzzed, operation: Any, mode: GenerationMode) -> Any:
    names = [p for p in fuzzed.seeds if "{" + p + "}" in operation.path]
    seeds = dict(fuzzed.seeds)
    if operation.path.endswith("/deactivate"):
        seeds["user_id"] = [*seeds["user_id"], fuzzed.admin_id]
    generated = operation.as_strategy(generation_mode=mode)
    if "user_id" in names:
        # A generated id may name a fuzzing role's own account: only the seeded user is fair game.
        generated = generated.filter(
            lambda case: case.path_parameters.get("user_id") not in fuzzed.protected_users
        )
    seeded = [
        operation.as_strategy(
            generation_mode=mode, path_parameters=dict(zip(names, values, strict=True))
        )
        for values in product(*(seeds[n] for n in names))
    ]
    return st.one_of(generated, *seeded)


def _modes(fuzzed: Fuzzed, method: str, path: str) -> list[GenerationMode]:
    """The negative mode needs something to break: a parameter, a body or the bearer token."""
    spec = fuzzed.schema.raw_schema["paths"][path][method.lower()]
    if spec.get("parameters") or spec.get("requestBody") or spec.get("security"):
        return list(MODES)
    return [GenerationMode.POSITIVE]


def _run(fuzzed: Fuzzed, method: str, path: str, role: str, mode: GenerationMode) -> None:
    operation = fuzzed.schema[path][method]
    bearer = f"Bearer {fuzzed.world.tokens[role]}"
    defects = _defects(method, path)
    undocumented = frozenset().union(*(d.undocumented for d in defects))
    answers = fuzzed.answers.setdefault((f"{method} {path}", role), Counter())

    @given(case=_strategy(fuzzed, operation, mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case: Case[Any]) -> None:
        if any(d.meets is not None and d.meets(case) for d in defects):
            return
        # A well-formed bearer token becomes the role's; one the negative mode removed or
        # broke stays so, and must be refused with 401.
        if case.headers and str(case.headers.get("Authorization", "")).startswith("Bearer "):
            case.headers["Authorization"] = bearer
        response = case.call(base_url=fuzzed.base_url, session=session)
        answers[response.status_code] += 1
        excluded = [STATUS_CHECK] if response.status_code in undocumented else []
        try:
            case.validate_response(response, checks=CHECKS, excluded_checks=excluded)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = (f"{method} {path}", role, f"{failure.title} ({response.status_code})")
                fuzzed.failures.setdefault(key, str(group))

    with requests.Session() as session:
        check()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_no_5xx_and_every_answer_fits_the_schema(
    fuzzed: Fuzzed, method: str, path: str
) -> None:
    for role, mode in product(ROLES, _modes(fuzzed, method, path)):
        await asyncio.to_thread(_run, fuzzed, method, path, role, mode)
    found = {k: v for k, v in fuzzed.failures.items() if k[0] == f"{method} {path}"}
    assert not found, "\n\n".join(
        f"{op} as {role}: {title}\n{text}" for (op, role, title), text in found.items()
    )


def test_known_defects_still_hold() -> None:
    """An undocumented status that the schema now documents is a fixed defect: its entry goes."""
    spec = create_app(make_settings()).openapi()
    for method, path in OPERATIONS:
        documented = {int(s) for s in spec["paths"][path][method.lower()]["responses"]}
        for defect in _defects(method, path):
            fixed = defect.undocumented & documented
            assert not fixed, f"{method} {path} documents {sorted(fixed)} now: {defect.what}"


def _csv(*cells: str) -> bytes:
    row = [*cells, *[""] * (len(HEADER) - len(cells) - 1), "yes"]
    return (",".join(HEADER) + "\n" + ",".join(row) + "\n").encode()


# Inputs that answered 5xx before, each now refused or answered as it should be, with what the
# answer says.
FOUND = [
    pytest.param("admin", "GET", f"/api/v1/users/{2**31}/tokens", None, 422, "user_id", id="id"),
    pytest.param(
        "admin", "POST", f"/api/v1/users/{10**20}/activate", None, 422, "user_id", id="huge id"
    ),
    pytest.param(
        "admin",
        "DELETE",
        f"/api/v1/users/{{admin}}/tokens/{2**31}",
        None,
        422,
        "token_id",
        id="token",
    ),
    pytest.param("admin", "GET", f"/api/v1/users?offset={2**31}", None, 422, "offset", id="users"),
    pytest.param(
        "admin",
        "POST",
        "/api/v1/users",
        {"email": "a\x00b@x.example", "role": "manager"},
        422,
        "email: Value error, must not contain the NUL character",
        id="NUL e-mail",
    ),
    pytest.param(
        "admin",
        "POST",
        "/api/v1/users",
        {"email": "m@x.example", "role": "manager", "name": "\x00"},
        422,
        "name",
        id="NUL name",
    ),
    pytest.param(
        "manager", "GET", f"/api/v1/catalogue?offset={10**20}", None, 422, "offset", id="offset"
    ),
    pytest.param(
        "manager", "GET", "/api/v1/catalogue/bm%00cro", None, 404, "no organisation", id="NUL id"
    ),
    *(
        pytest.param("manager", "GET", f"/api/v1/reports/{q}", None, 422, "9998-12-31", id=q)
        for q in ("funnel?as_of=9999-12-31", "stages?to=9999-12-31", "exchanges.csv?to=9999-12-31")
    ),
    pytest.param(
        "manager",
        "GET",
        "/api/v1/reports/outcomes?from=0001-01-01&as_of=0001-01-01",
        None,
        200,
        "",
        id="first day",
    ),
    pytest.param(
        "manager",
        "GET",
        "/api/v1/reports/clusters?to=9998-12-31&as_of=9998-12-31",
        None,
        200,
        "",
        id="last day",
    ),
    pytest.param(
        "admin",
        "POST",
        "/api/v1/catalogue/import",
        _csv("bm\x00", "N", "biom", "cro", "DE"),
        422,
        "line 2: id: contains the NUL character",
        id="NUL cell",
    ),
    pytest.param(
        "admin",
        "POST",
        "/api/v1/catalogue/import",
        _csv("x" * 200_000, "N", "biom", "cro", "DE"),
        422,
        "line 2: file: not readable as CSV",
        id="field over the csv limit",
    ),
]


@pytest.mark.parametrize(("who", "method", "path", "body", "status", "says"), FOUND)
async def test_what_the_fuzzing_found_stays_fixed(
    fuzzed: Fuzzed, who: str, method: str, path: str, body: Any, status: int, says: str
) -> None:
    world = fuzzed.world
    # A user that exists: the route finds the user before it reads the token id.
    path = path.replace("{admin}", str(fuzzed.admin_id))
    if isinstance(body, bytes):
        headers = {**world.auth(who), "Content-Type": "text/csv"}
        response = await world.client.request(method, path, content=body, headers=headers)
    else:
        response = await world.client.request(method, path, json=body, headers=world.auth(who))
    assert response.status_code == status, response.text
    assert says in response.text
    if status >= 400:
        assert set(response.json()["error"]) >= {"code", "message"}


async def test_a_link_page_refuses_nul_before_the_workflow_takes_the_amendment(
    fuzzed: Fuzzed,
) -> None:
    """The amendment reached the workflow and then failed to be written on PostgreSQL (503):
    the exchange went back to vetting with the old text, and the link was spent."""
    world = fuzzed.world
    title = f"Kinase study {uuid.uuid4().hex[:8]}"
    exchange_id = await world.create(title=title)
    await at_stage(world, exchange_id, "vetting")
    path = f"/api/v1/exchanges/{exchange_id}"
    asked = await world.post(
        "broker", f"{path}/vetting", {"decision": "request_changes", "note": "Name the species."}
    )
    assert asked.status_code == 200, asked.text
    await at_stage(world, exchange_id, "changes_requested")

    def amend_link() -> str | None:
        for received in world.mail.received:
            message = received.parsed()
            text = message.get_body(preferencelist=("plain",))
            content = str(text.get_content()) if text is not None else ""
            if message["X-CE4BIG-Kind"] == "changes_requested" and title in content:
                return str(LINK.findall(content)[0])
        return None

    token = await eventually(amend_link, what="the link to amend the request")
    page = await world.client.get(f"/t/{token}")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and csrf, page.text
    form = {"csrf": csrf.group(1), "action": "amend", "title": f"{title} \x00"}
    refused = await world.client.post(f"/t/{token}", data=form)
    assert refused.status_code == 422, refused.text
    await at_stage(world, exchange_id, "changes_requested")
    amended = await world.client.post(f"/t/{token}", data={**form, "title": f"{title}, v2"})
    assert amended.status_code == 200, amended.text
    assert (await world.get("sme", path)).json()["title"] == f"{title}, v2"
