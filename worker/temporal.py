"""Temporal plumbing shared by the worker, the starters and the tests."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from domain import search_attributes as sa
from domain.config import TemporalSettings


def data_converter() -> DataConverter:
    return pydantic_data_converter


async def connect(settings: TemporalSettings | None = None) -> Client:
    s = settings or TemporalSettings.from_env()
    return await Client.connect(s.address, namespace=s.namespace, data_converter=data_converter())


async def register_search_attributes(client: Client, namespace: str | None = None) -> None:
    """Idempotent: adds only the CodeBlue keys the namespace does not have yet."""
    ns = namespace or client.namespace
    try:
        have = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=ns))
        existing = set(have.custom_attributes)
    except RPCError as e:
        if e.status != RPCStatusCode.UNIMPLEMENTED:  # the time-skipping server only adds
            raise
        existing = set()
    missing = {
        k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in sa.ALL if k.name not in existing
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=ns, search_attributes=missing)
        )
