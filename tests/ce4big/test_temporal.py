"""How the app reaches Temporal: plain for the dev server, TLS with an API key (Temporal Cloud),
mTLS with a client certificate given as a file or as PEM text."""

from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.service import TLSConfig

from ce4big.errors import Unavailable
from ce4big.settings import Settings
from ce4big.temporal import tls_config


def settings(**values: str) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def pem(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate and key as files (the client only passes their bytes on to the server)."""
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIGHfake\n-----END PRIVATE KEY-----\n")
    return cert, key


def test_the_dev_server_is_plain() -> None:
    assert tls_config(settings()) is False


def test_an_api_key_turns_tls_on() -> None:
    assert tls_config(settings(temporal_api_key="tcld-key")) is True


def test_a_client_certificate_from_files_or_pem_text(pem: tuple[Path, Path]) -> None:
    cert, key = pem
    from_files = tls_config(
        settings(temporal_tls_cert=str(cert), temporal_tls_key=str(key), temporal_tls_ca=str(cert))
    )
    from_text = tls_config(
        settings(temporal_tls_cert=cert.read_text(), temporal_tls_key=key.read_text())
    )
    assert isinstance(from_files, TLSConfig) and isinstance(from_text, TLSConfig)
    assert from_files.client_cert == from_text.client_cert == cert.read_bytes()
    assert from_files.client_private_key == key.read_bytes()
    assert from_files.server_root_ca_cert == cert.read_bytes()
    assert from_text.server_root_ca_cert is None


def test_a_certificate_without_its_key_or_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY"):
        settings(temporal_tls_cert="/run/secrets/client.pem")
    missing = settings(
        temporal_tls_cert=str(tmp_path / "nope.pem"), temporal_tls_key=str(tmp_path / "nope.key")
    )
    with pytest.raises(Unavailable, match=r"nope\.pem"):
        tls_config(missing)
