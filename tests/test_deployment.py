"""The deployment file: what it publishes, and that every setting it passes is one the app
reads (a misspelt name would be ignored without a word)."""

from pathlib import Path
from typing import Any

import yaml

from ce4big.settings import Settings

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"
# Images that read their own environment, not the app's.
THIRD_PARTY = {"postgres", "mailpit", "temporal"}


def services() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def test_only_the_web_app_is_published_beyond_this_machine() -> None:
    published = {
        name: [str(port) for port in service.get("ports", [])]
        for name, service in services().items()
        if service.get("ports")
    }
    open_to_all = {
        name: ports
        for name, ports in published.items()
        if any(not port.startswith("127.0.0.1:") for port in ports)
    }
    assert open_to_all == {"web": ["8000:8000"]}
    assert "temporal" not in published


def test_the_mail_catcher_runs_only_in_the_demo_profile() -> None:
    assert services()["mailpit"]["profiles"] == ["demo"]


def test_every_variable_set_for_the_app_is_a_setting() -> None:
    known = {name.upper() for name in Settings.model_fields}
    unknown = {
        f"{name}: {variable}"
        for name, service in services().items()
        if name not in THIRD_PARTY
        for variable in service.get("environment", {})
        if variable not in known
    }
    assert unknown == set()
    assert services()["worker"]["environment"]["CE4BIG_ENV"] == "production"
