"""One Temporal client per process, connected on first use so a late server is not fatal."""

import asyncio
from datetime import timedelta
from pathlib import Path

from google.protobuf.duration_pb2 import Duration
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, UpdateNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, TLSConfig

from ce4big.errors import Unavailable
from ce4big.settings import Settings


class TemporalConnector:
    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._client = client
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await connect_temporal(self._settings)
                except (RuntimeError, RPCError) as exc:
                    raise Unavailable(
                        f"Temporal at {self._settings.temporal_target} does not answer: {exc}"
                    ) from exc
        return self._client

    async def healthy(self) -> bool:
        try:
            client = await self.client()
            return await client.service_client.check_health(timeout=timedelta(seconds=3))
        except (Unavailable, RuntimeError, RPCError):
            return False


async def connect_temporal(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_target,
        namespace=settings.temporal_namespace,
        tls=tls_config(settings),
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
    )


def _pem(value: str) -> bytes:
    """PEM text given as itself, or the path of a file that holds it."""
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise Unavailable(f"cannot read {value}: {exc.strerror}") from None


def tls_config(settings: Settings) -> TLSConfig | bool:
    """mTLS with the client certificate (and the server's private CA); TLS alone with an API
    key or a CA; plain for the dev server."""
    cert, key = settings.temporal_tls_cert, settings.temporal_tls_key
    ca = _pem(settings.temporal_tls_ca) if settings.temporal_tls_ca else None
    if cert is not None and key is not None:
        return TLSConfig(
            client_cert=_pem(cert),
            client_private_key=_pem(key.get_secret_value()),
            server_root_ca_cert=ca,
        )
    if ca is not None:
        return TLSConfig(server_root_ca_cert=ca)
    return settings.temporal_api_key is not None


async def set_retention(client: Client, days: int) -> bool:
    """Sets how long the namespace keeps closed workflows' histories; False when it already
    did. The histories hold the decisions' inputs (actors' addresses, notes), which erasing a
    person in SQL cannot reach: this bounds how long they outlive it."""
    wanted = Duration(seconds=days * 86400)
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace)
    )
    if described.config.workflow_execution_retention_ttl == wanted:
        return False
    await client.workflow_service.update_namespace(
        UpdateNamespaceRequest(
            namespace=client.namespace,
            config=NamespaceConfig(workflow_execution_retention_ttl=wanted),
        )
    )
    return True
