"""OpenTelemetry export (PREDICTD_OPENTELEMETRY=true, the `predictd[otel]` extra).

FastAPI's built-in instrumentation traces and measures every request through the global
providers. When nothing configured those (no `opentelemetry-instrument`, no code of the
user's), predictd sets providers that export over OTLP/HTTP, configured entirely by the
standard ``OTEL_*`` variables (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_METRIC_EXPORT_INTERVAL``...), so any OTLP receiver works:
an OpenTelemetry Collector, Grafana Alloy, or Azure Monitor through the collector.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

log = logging.getLogger("predictd.telemetry")

OTEL_HINT = "pip install 'predictd[otel]'"


def configure() -> Callable[[], None]:
    """Set OTLP-exporting tracer and meter providers unless some are set already; returns
    what flushes and stops them at shutdown (nothing to do when predictd did not set them)."""
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "PREDICTD_OPENTELEMETRY=true but the OpenTelemetry SDK is not installed: requests "
            f"go to whatever providers are configured ({OTEL_HINT} to export over OTLP)"
        )
        return lambda: None
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return lambda: None  # configured by opentelemetry-instrument or the user: theirs
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "predictd"}
    resource = Resource.create(attributes)  # also reads OTEL_RESOURCE_ATTRIBUTES
    tracer = TracerProvider(resource=resource)
    tracer.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    meter = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]
    )
    trace.set_tracer_provider(tracer)
    metrics.set_meter_provider(meter)
    log.info("exporting traces and metrics over OTLP")

    def shutdown() -> None:
        tracer.shutdown()  # flushes the spans still batched
        meter.shutdown()

    return shutdown
