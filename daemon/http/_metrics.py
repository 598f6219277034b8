"""``/metrics``: the daemon's counters in Prometheus text format.

A custom collector reads the counters the router and the channels already
keep, at scrape time, so the request path does no extra bookkeeping; with
several workers, their counters added up (see `_machine`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE
from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .._actor import LATENCY_BUCKETS, ServiceStats
from ..outbox import OutboxStats

__all__ = ["CONTENT_TYPE", "OutboxFigures", "metrics_text"]

#: The latency histogram's upper bounds, as its ``le`` labels.
_BOUNDS = [*map(str, LATENCY_BUCKETS), "+Inf"]


class _DaemonCollector(Collector):
    def __init__(
        self,
        stats: Mapping[str, ServiceStats],
        requests: Mapping[tuple[str, int], int],
        outbox: OutboxFigures | None,
    ) -> None:
        self._stats = stats
        self._requests = requests
        self._outbox = outbox

    def collect(self) -> Iterator[Metric]:
        invocations = CounterMetricFamily(
            "hotwire_service_invocations", "Messages handled, per service.", labels=["service"]
        )
        errors = CounterMetricFamily(
            "hotwire_service_errors", "Messages that failed, per service.", labels=["service"]
        )
        latency = HistogramMetricFamily(
            "hotwire_service_latency_seconds",
            "Time from a worker taking a message to its answer.",
            labels=["service"],
        )
        for name, stats in sorted(self._stats.items()):
            invocations.add_metric([name], stats.invocations)
            errors.add_metric([name], stats.errors)
            cumulative = list(itertools.accumulate(stats.buckets))
            latency.add_metric(
                [name], list(zip(_BOUNDS, cumulative, strict=True)), stats.total_seconds
            )
        requests = CounterMetricFamily(
            "hotwire_channel_requests",
            "REST channel answers by status.",
            labels=["channel", "status"],
        )
        for (channel, status), count in sorted(self._requests.items()):
            requests.add_metric([channel, str(status)], count)
        yield from (invocations, errors, latency, requests)
        if self._outbox is not None:
            yield from self._outbox_metrics(self._outbox)

    @staticmethod
    def _outbox_metrics(figures: OutboxFigures) -> Iterator[Metric]:
        messages = GaugeMetricFamily(
            "hotwire_outbox_messages", "Outbox messages by state.", labels=["state"]
        )
        for state, count in sorted(figures.counts.items()):
            messages.add_metric([str(state)], count)
        yield messages
        for name, help_text in (
            ("accepted", "Messages accepted durably."),
            ("delivered", "Messages delivered."),
            ("failed_attempts", "Delivery attempts that failed."),
            ("dead", "Messages that used up their attempts."),
        ):
            yield CounterMetricFamily(
                f"hotwire_outbox_{name}", help_text, value=getattr(figures.stats, name)
            )


@dataclass(frozen=True)
class OutboxFigures:
    """The outbox's counts by state (read from its store) and its process counters."""

    counts: Mapping[Any, int]
    stats: OutboxStats


def metrics_text(
    stats: Mapping[str, ServiceStats],
    requests: Mapping[tuple[str, int], int],
    outbox: OutboxFigures | None = None,
) -> bytes:
    """Service counters, channel answers and the outbox in Prometheus' text format."""
    # generate_latest only calls collect(): a registry around one collector adds nothing.
    return generate_latest(_DaemonCollector(stats, requests, outbox))
