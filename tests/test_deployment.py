"""The deployment files: what they publish, that they check health, and that every setting
they pass is one the app reads (a misspelt name would be ignored without a word)."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from ce4big.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FILES = ("docker-compose.yml", "docker-compose.cloud.yml")
# Images that read their own environment, not the app's.
THIRD_PARTY = {
    "postgres",
    "mailpit",
    "temporal",
    "temporal-schema",
    "temporal-namespace",
    "temporal-ui",
    "proxy",
}


def services(name: str) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())["services"]
    return found


def published(name: str) -> dict[str, list[str]]:
    """Ports published beyond this machine, by service."""
    return {
        service: open_ports
        for service, spec in services(name).items()
        if (open_ports := [str(p) for p in spec.get("ports", []) if not str(p).startswith("127.")])
    }


def test_only_the_proxy_is_published_beyond_this_machine() -> None:
    for name in FILES:
        assert list(published(name)) == ["proxy"], name
    local = services("docker-compose.yml")
    assert local["proxy"]["ports"][-1] == "127.0.0.1:8080:8080"  # the Temporal UI
    assert "ports" not in local["temporal"] and "ports" not in local["web"]


def test_temporal_runs_on_postgresql_with_its_schema_set_up_first() -> None:
    local = services("docker-compose.yml")
    assert local["temporal"]["image"].startswith("temporalio/server:")
    assert local["temporal"]["environment"]["DB"] == "postgres12"
    assert local["temporal-schema"]["image"].startswith("temporalio/admin-tools:")
    waits = local["temporal"]["depends_on"]["temporal-schema"]["condition"]
    assert waits == "service_completed_successfully"
    assert "auto-setup" not in (ROOT / "docker-compose.yml").read_text()


def test_the_stateful_and_served_services_check_their_health() -> None:
    for name in FILES:
        checked = {s for s, spec in services(name).items() if "healthcheck" in spec}
        assert {"postgres", "web"} <= checked, name
    assert "healthcheck" in services("docker-compose.yml")["temporal"]


def test_the_mail_catcher_runs_only_in_the_demo_profile() -> None:
    assert services("docker-compose.yml")["mailpit"]["profiles"] == ["demo"]
    assert "mailpit" not in services("docker-compose.cloud.yml")


@pytest.mark.parametrize("name", FILES)
def test_every_variable_set_for_the_app_is_a_setting(name: str) -> None:
    known = {field.upper() for field in Settings.model_fields}
    unknown = {
        f"{service}: {variable}"
        for service, spec in services(name).items()
        if service not in THIRD_PARTY
        for variable in spec.get("environment", {})
        if variable not in known
    }
    assert unknown == set()
    assert services(name)["worker"]["environment"]["CE4BIG_ENV"] == "production"
