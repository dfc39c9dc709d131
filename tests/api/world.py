"""A running product for API tests: the app, a worker with the real activities on Temporal's
time-skipping server, a real SMTP server, and one set of users per role."""

import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from bench.drive import REQUEST
from ce4big.settings import Settings
from emails.signin import SignInMailer
from tests.api.browser import serving
from tests.conftest import make_settings
from tests.emails.mailserver import RecordingHandler, smtp_server
from tests.factories import add_organisation, user_with_token
from worker import build_worker

GLP_CRO = (
    "Contract research organisation running GLP toxicology studies: repeated-dose toxicity, "
    "genotoxicity (Ames, micronucleus) and safety pharmacology for small molecules."
)
GLP_CRO_FR = (
    "CRO spécialisée en toxicologie réglementaire BPL : toxicité à doses répétées, "
    "génotoxicité et pharmacologie de sécurité."
)


@dataclass
class World:
    client: httpx.AsyncClient
    env: WorkflowEnvironment
    engine: Engine
    settings: Settings
    mail: RecordingHandler
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def post(self, who: str, path: str, body: Any = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.auth(who))

    async def get(self, who: str, path: str) -> httpx.Response:
        return await self.client.get(path, headers=self.auth(who))

    async def create(self, who: str = "sme", **changes: Any) -> int:
        response = await self.post(who, "/api/v1/exchanges", {**REQUEST, **changes})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])


def add_people(session: Session) -> dict[str, str]:
    add_organisation(session, "bw-sme", "biowin", name="Meuse Kinase SA", country="BE")
    add_organisation(session, "at-sme", "atlanpole", name="Erdre Pharma", country="FR")
    add_organisation(
        session,
        "bm-cro",
        "biom",
        kind="cro",
        name="Isar Tox GmbH",
        country="DE",
        description=GLP_CRO,
        certifications=["GLP"],
        services=["GLP toxicology", "genotoxicity"],
        contact_name="Jonas Weber",
        contact_email="bd@isartox.example",
    )
    add_organisation(
        session,
        "kr-cro",
        "klsk",
        kind="cro",
        name="Wawel Tox",
        country="PL",
        description=GLP_CRO_FR,
        certifications=["GLP"],
        contact_email="bd@waweltox.example",
    )
    session.commit()
    people = {
        "sme": ("anna@meuse-kinase.example", "sme", None, "bw-sme"),
        "other_sme": ("luc@erdre.example", "sme", None, "at-sme"),
        "broker": ("broker@biowin.example", "broker", "biowin", None),
        "host_biom": ("broker@biom.example", "broker", "biom", None),
        "host_klsk": ("broker@klsk.example", "broker", "klsk", None),
        "other_broker": ("broker@atlanpole.example", "broker", "atlanpole", None),
        "manager": ("manager@ce4big.example", "manager", None, None),
        "admin": ("admin@ce4big.example", "admin", None, None),
    }
    return {
        name: user_with_token(session, email, role, cluster, organisation)[1]
        for name, (email, role, cluster, organisation) in people.items()
    }


@asynccontextmanager
async def running_world(
    engine: Engine, env: WorkflowEnvironment, *, http_port: int | None = None, **overrides: Any
) -> AsyncIterator[World]:
    """With `http_port`, the app is also served there by uvicorn (for a browser), and its
    e-mails link to it."""
    mail = RecordingHandler()
    async with smtp_server(mail) as port:
        if http_port is not None:
            overrides.setdefault("base_url", f"http://127.0.0.1:{http_port}")
        settings = make_settings(
            engine.url.render_as_string(hide_password=False),
            smtp_host="127.0.0.1",
            smtp_port=port,
            temporal_task_queue=f"api-{uuid.uuid4()}",
            outcome_wave_days=0,
            **overrides,
        )
        with Session(engine) as session:
            tokens = add_people(session)
        app = create_app(
            settings, temporal_client=env.client, sign_in_mailer=SignInMailer(settings)
        )
        with ThreadPoolExecutor(max_workers=8) as executor:
            worker = build_worker(env.client, settings, engine, executor)
            async with (
                worker,
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://testserver"
                ) as client,
                serving(app, http_port) if http_port is not None else nullcontext(),
            ):
                yield World(client, env, engine, settings, mail, tokens)
