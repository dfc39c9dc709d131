"""The exchange's search attributes in Temporal visibility, defined once: the workflow upserts
them at every stage entry, the dev stack and `ce4big temporal setup` register them, the worker
refuses to start without them (an upsert of an unknown attribute fails its workflow task, which
Temporal then retries for ever).

Only vocabulary goes into visibility: stages, cluster ids and parties, never an e-mail address,
a name or an organisation.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributeUpdate,
)

from ce4big.domain import Party

# The stage as the state query names it; `closed` once the exchange has an outcome.
STAGE = SearchAttributeKey.for_keyword("ExchangeStage")
HOME_CLUSTER = SearchAttributeKey.for_keyword("HomeCluster")
# The parties the stage waits on, without the organisation or cluster; unset when none.
WAITING_ON = SearchAttributeKey.for_keyword_list("WaitingOn")
# The stage's deadline, as the state query and the exchange page give it; unset when none.
STAGE_DEADLINE = SearchAttributeKey.for_datetime("StageDeadline")

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[Any], ...] = (
    STAGE,
    HOME_CLUSTER,
    WAITING_ON,
    STAGE_DEADLINE,
)
PARTIES = tuple(party.value for party in Party)

# The type names of `temporal server start-dev --search-attribute NAME=TYPE` and of the UI.
_TYPE_NAMES = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


class SearchAttributeError(Exception):
    """The namespace lacks an attribute, or holds one under another type."""


def parties(waiting_on: Sequence[str]) -> list[str]:
    """`host_broker:biom` waits on a host broker: the party, never the cluster or partner id."""
    named = {entry.split(":", 1)[0] for entry in waiting_on}
    return [party for party in PARTIES if party in named]


def stage_updates(
    *, stage: str, home_cluster: str, waiting_on: Sequence[str], deadline: datetime | None
) -> list[SearchAttributeUpdate[Any]]:
    waiting = parties(waiting_on)
    return [
        STAGE.value_set(stage),
        HOME_CLUSTER.value_set(home_cluster),
        WAITING_ON.value_set(waiting) if waiting else WAITING_ON.value_unset(),
        STAGE_DEADLINE.value_set(deadline) if deadline else STAGE_DEADLINE.value_unset(),
    ]


def dev_server_arguments() -> list[str]:
    """The flags that make `temporal server start-dev` register the attributes."""
    arguments: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        arguments += ["--search-attribute", f"{key.name}={type_name(key.indexed_value_type)}"]
    return arguments


def type_name(value: int) -> str:
    try:
        return _TYPE_NAMES[SearchAttributeIndexedValueType(value)]
    except (KeyError, ValueError):
        return f"type {value}"


async def _registered(client: Client) -> dict[str, int]:
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return {**response.system_attributes, **response.custom_attributes}


def _clashes(registered: dict[str, int]) -> list[str]:
    return [
        f"{key.name} is a {type_name(registered[key.name])}, "
        f"not a {type_name(key.indexed_value_type)}"
        for key in SEARCH_ATTRIBUTES
        if key.name in registered and registered[key.name] != key.indexed_value_type
    ]


async def check_search_attributes(client: Client) -> None:
    """Raises SearchAttributeError naming what to run when an attribute is missing or clashes."""
    registered = await _registered(client)
    missing = [key.name for key in SEARCH_ATTRIBUTES if key.name not in registered]
    problems = _clashes(registered)
    if missing:
        problems.insert(0, f"{', '.join(missing)} not registered")
    if problems:
        raise SearchAttributeError(
            f"Temporal namespace {client.namespace!r} lacks the exchange search attributes "
            f"({'; '.join(problems)}): run `ce4big temporal setup`"
        )


async def register_search_attributes(client: Client) -> list[str]:
    """Registers the attributes the namespace lacks and returns their names; those already
    there with the right type are fine, one of another type is an error."""
    registered = await _registered(client)
    problems = _clashes(registered)
    if problems:
        raise SearchAttributeError(
            f"Temporal namespace {client.namespace!r}: {'; '.join(problems)}; "
            "rename or remove it on the cluster first"
        )
    missing = [key for key in SEARCH_ATTRIBUTES if key.name not in registered]
    if missing:
        await client.operator_service.add_search_attributes(add_request(client.namespace, missing))
    return [key.name for key in missing]


def add_request(
    namespace: str, keys: Sequence[SearchAttributeKey[Any]] = SEARCH_ATTRIBUTES
) -> AddSearchAttributesRequest:
    return AddSearchAttributesRequest(
        namespace=namespace,
        search_attributes={
            key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in keys
        },
    )
