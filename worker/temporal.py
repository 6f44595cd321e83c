"""Temporal plumbing shared by the worker, the starters and the tests."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, EncodingPayloadConverter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from domain import search_attributes as sa
from domain.config import ConfigError, TemporalSettings
from domain.identity import OPERATOR_VIA
from worker.codec import REFUSED


class _Refused(EncodingPayloadConverter):
    """Reads a payload the codec refused (worker.codec.REFUSED) as the error it is."""

    @property
    def encoding(self) -> str:
        return REFUSED.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        raise ValueError(f"payload refused: {payload.data.decode(errors='replace')[:300]}")


class RefusingPayloadConverter(PydanticPayloadConverter):
    """Pydantic JSON, and a clear error for a payload the codec refused: the SDK then drops
    that one signal (rejects that one update) and the workflow task goes on."""

    def __init__(self) -> None:
        super().__init__()
        self._set_converters(*self.converters.values(), _Refused())


def quiet_core_logs() -> None:
    """The SDK core logs to stdout at WARN: expected failures (a replay that must not fit, a
    task completed after its workflow closed under a benchmark's load) would fill the output.
    Errors still print. Call before the first client or worker of the process."""
    from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

    Runtime.set_default(Runtime(telemetry=TelemetryConfig(
        logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR")))), error_if_already_set=False)


def data_converter() -> DataConverter:
    """Pydantic JSON; encrypted (worker.codec) when a codec key is configured in the env."""
    from worker.codec import codec_from_env

    codec = codec_from_env()
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_converter_class=RefusingPayloadConverter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


SANDBOX_ENV = "CODEBLUE_WORKFLOW_SANDBOX"


def workflow_runner(mode: str | None = None) -> SandboxedWorkflowRunner:
    """The sandbox a worker runs CodeBlue's workflows in.

    `shared` (the default for `codeblue worker`, the drills and the bench): CodeBlue's own
    `workflows` and `domain` modules are imported once and shared by every run instead of
    re-imported per run, which is most of a cached incident's memory and of its start-up CPU.
    The SDK's run-time checks on the modules it proxies still apply, but a non-deterministic
    call written in CodeBlue's own code is then not refused. `strict`: everything re-imported
    per run, every call checked — what the test suite and every replay of a committed history
    run, so such a call fails the tests before it reaches a worker."""
    mode = (mode or os.environ.get(SANDBOX_ENV) or "shared").strip().lower()
    if mode == "strict":
        return SandboxedWorkflowRunner()
    if mode != "shared":
        raise ConfigError(f"{SANDBOX_ENV}={mode!r}: expected 'shared' or 'strict'")
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows", "domain"))


def replayer(workflows: list) -> Replayer:
    """A Replayer as the workers run: same converter, same identity interceptor."""
    from worker.identity import client_interceptors

    return Replayer(workflows=workflows, data_converter=data_converter(), interceptors=client_interceptors())


async def connect(settings: TemporalSettings | None = None, via: str | None = OPERATOR_VIA) -> Client:
    """A client for the settings (default: the environment): mTLS or API key when given,
    the Prometheus runtime when CODEBLUE_METRICS_BIND is set."""
    from worker.connection import connect_options

    s = settings or TemporalSettings.from_env()
    return await Client.connect(
        s.address, namespace=s.namespace, data_converter=data_converter(), **connect_options(s, via)
    )


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
