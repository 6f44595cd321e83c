"""CODEBLUE_TRACING=otel: the client built by `connect()` carries the OpenTelemetry tracing
interceptor to its workers, so an incident's start, run and activities become spans."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.worker import Worker

from domain.config import ConfigError, TemporalSettings
from sandbox.memory_world import World, incident_worker
from starters import service
from tests.support.polling import until
from tests.support.workflows import incident, proposed, terminate
from worker.temporal import connect


@pytest.fixture
def spans() -> InMemorySpanExporter:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_an_incident_is_traced_when_tracing_is_on(dev_env, spans, monkeypatch):
    monkeypatch.setenv("CODEBLUE_TRACING", "otel")
    target = dev_env.client.service_client.config.target_host
    client = await connect(TemporalSettings(address=target, namespace=dev_env.client.namespace))
    world = World()
    tq = f"trace-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=tq, **incident_worker(world)):
        h = await service.start_incident(client, incident(), tq)
        await until(h, proposed, "proposals", timeout=60)
        await terminate(h)
    names = {s.name for s in spans.get_finished_spans()}
    assert "StartWorkflow:IncidentResponseWorkflow" in names, names
    assert "RunWorkflow:IncidentResponseWorkflow" in names, names
    assert "RunActivity:pod_status" in names, names


def test_an_unknown_tracing_value_is_a_one_line_error(monkeypatch):
    from worker.connection import connect_options

    monkeypatch.setenv("CODEBLUE_TRACING", "zipkin")
    with pytest.raises(ConfigError, match="CODEBLUE_TRACING=zipkin: expected otel or off"):
        connect_options(TemporalSettings())
