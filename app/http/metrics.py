"""GET /metrics: the pipeline's counters and histograms in Prometheus' text format, read at scrape time.

On a device every sample carries the module's identity, `iothub`, `edge_device` and `module_name` (from the
IOTEDGE_* variables the runtime sets), the labels IoT Edge's own metrics carry: the metrics-collector sends
every device's metrics into one Log Analytics table, where unlabelled series could not be told apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from app.core.pipeline import Pipeline
from app.http.errors import HttpStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# IoT Edge's label -> the runtime's variable
IDENTITY_LABELS = {"iothub": "IOTEDGE_IOTHUBHOSTNAME", "edge_device": "IOTEDGE_DEVICEID", "module_name": "IOTEDGE_MODULEID"}


def identity_labels(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The module's identity as metric labels; empty outside IoT Edge (no IOTEDGE_* variables)."""
    environ = os.environ if environ is None else environ
    return {label: environ[var] for label, var in IDENTITY_LABELS.items() if environ.get(var)}


class PipelineCollector(Collector):
    """Exposes the pipeline's counters; nothing is counted twice or on the per-message path."""

    def __init__(self, pipeline: Pipeline, http: HttpStats | None = None, identity: Mapping[str, str] | None = None) -> None:
        self._pipeline = pipeline
        self._http = http
        self._identity = dict(identity_labels() if identity is None else identity)

    def collect(self) -> Iterator[Metric]:
        identity = self._identity
        for metric in self._families():
            if identity:
                metric.samples = [sample._replace(labels={**identity, **sample.labels}) for sample in metric.samples]
            yield metric

    def _families(self) -> Iterator[Metric]:
        p = self._pipeline
        stats, manifest = p.stats, p.scorer.manifest
        prefix = "edge_inference"
        for name, help_text, value in (
            ("messages", "Messages taken in (edgeHub, HTTP)", stats.messages),
            ("predictions", "Messages that got a prediction", stats.predictions),
            ("rows", "Feature rows scored", stats.rows),
            ("output_messages", "Output messages handed to edgeHub", stats.output_messages),
            ("batches", "run() calls", stats.model.run_calls),
            ("queue_full_waits", "Times intake waited for room in the queue", p.batcher.queue_full_waits),
            ("refused", "HTTP requests refused with 503 because the queue was full", stats.refused),
            ("send_failures", "Outputs the sink refused", stats.send_failures),
        ):
            yield CounterMetricFamily(f"{prefix}_{name}", help_text, value=value)
        errors = CounterMetricFamily(f"{prefix}_errors", "Messages that got an error record, by reason", labels=["code"])
        for code, count in sorted(stats.errors_by_code.items()):
            errors.add_metric([code], count)
        yield errors
        for name, help_text, histogram in (
            ("batch_rows", "Feature rows per run() call", stats.model.batch_rows),
            ("scoring_seconds", "Duration of one run() call", stats.model.scoring_seconds),
            ("latency_seconds", "Intake to output handed to edgeHub or the HTTP reply, per message", stats.latency_seconds),
        ):
            family = HistogramMetricFamily(f"{prefix}_{name}", help_text)
            family.add_metric([], histogram.buckets(), histogram.total)
            yield family
        yield GaugeMetricFamily(f"{prefix}_queue_depth", "Messages waiting for the model", value=p.batcher.depth)
        info = InfoMetricFamily(f"{prefix}_model", "The model in use")
        info.add_metric([], {"name": manifest.name, "version": str(manifest.version), "sha256": manifest.sha256})
        yield info
        if self._http is not None:
            yield from _http_families(prefix, self._http)


def _http_families(prefix: str, http: HttpStats) -> Iterator[Metric]:
    yield GaugeMetricFamily(f"{prefix}_http_connections", "Open HTTP connections", value=http.connections)
    for name, help_text, value in (
        ("http_connections_accepted", "HTTP connections accepted, refused ones included", http.connections_accepted),
        ("http_connections_refused", "HTTP connections refused with 503: every connection was busy", http.connections_refused),
        ("http_connections_evicted", "Idle or slow HTTP connections closed to let a new one in", http.connections_evicted),
    ):
        yield CounterMetricFamily(f"{prefix}_{name}", help_text, value=value)
    errors = CounterMetricFamily(
        f"{prefix}_http_errors", "Answers the HTTP layer gave by itself (401, 408, 413, 415...), by code", labels=["code"]
    )
    for code, count in sorted(http.errors_by_code.items()):
        errors.add_metric([code], count)
    yield errors


def metrics_text(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def registry_for(pipeline: Pipeline, http: HttpStats | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(PipelineCollector(pipeline, http))
    return registry
