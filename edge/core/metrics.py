"""`GET /metrics` through prometheus-client: the decision counters, the gauges read from the daemon at
scrape time, and the daemon process's own (RSS, open files, CPU).

The decision path only adds to a dictionary and a list (a library counter's and histogram's locks cost
ten times as much there). A scrape takes a copy of them with the gauges (`Metrics.snapshot`, on the gate's
loop, microseconds), and the text is made where the API runs (`Exposition`, half a millisecond of the
library's work that would otherwise sit in front of a badge). Each has a registry of its own, not the
library's global one: two gates in one process (tests, a benchmark) count apart.
"""
from __future__ import annotations

import bisect
import threading

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

# decision latency buckets, seconds: the budget is 2 ms for a decision with its journal write
BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1)

Gauge = tuple[str, str, str, list[tuple[dict, float]]]  # (name, type, help, [(labels, value)])


class _ReadNow:
    """The gauges handed to `Metrics.render`, as metric families for the one scrape under way."""

    def __init__(self) -> None:
        self.gauges: list[Gauge] = []

    def collect(self):
        for name, kind, help_, samples in self.gauges:
            m = Metric(name.removesuffix("_total") if kind == "counter" else name, help_, kind)
            for labels, value in samples:
                m.add_sample(name, {k: str(v) for k, v in labels.items()}, float(value))
            yield m


class _Decisions:
    """The counters `Metrics.decided` keeps, as the library's metric families."""

    def __init__(self) -> None:
        self.by_reason: dict[tuple[str, str], int] = {}
        self.latency = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0

    def collect(self):
        c = CounterMetricFamily("gatekeeper_decisions", "Decisions by result (granted, denied, held) and reason code.",
                                labels=("result", "reason"))
        for (result, reason), n in sorted(self.by_reason.items()):
            c.add_metric((result, reason), n)
        yield c
        cumulative, buckets = 0, []
        for le, n in zip(BUCKETS + (float("inf"),), list(self.latency)):
            cumulative += n
            buckets.append(("+Inf" if le == float("inf") else repr(le), cumulative))
        yield HistogramMetricFamily("gatekeeper_decision_seconds",
                                    "Time from credential to decision, journal write included.",
                                    buckets=buckets, sum_value=self.latency_sum)


Counts = tuple[dict, list, float]  # a copy of the decision counters: by (result, reason), latency buckets, sum


class Metrics:
    """What the gate counts as it decides."""

    def __init__(self) -> None:
        self._decisions = _Decisions()

    def decided(self, result: str, reason: str, seconds: float) -> None:
        d = self._decisions
        key = (result, reason)
        d.by_reason[key] = d.by_reason.get(key, 0) + 1
        d.latency[bisect.bisect_left(BUCKETS, seconds)] += 1
        d.latency_sum += seconds

    def snapshot(self) -> Counts:
        d = self._decisions
        return dict(d.by_reason), list(d.latency), d.latency_sum


class Exposition:
    """The exposition text (format 0.0.4) of a gate's counts and gauges, with the process metrics of the
    daemon, `pid` (this process when None): the API process reads the gate's in /proc."""

    def __init__(self, pid: int | None = None) -> None:
        self.registry = CollectorRegistry()
        self._decisions = _Decisions()
        self.registry.register(self._decisions)
        # process_resident_memory_bytes, process_open_fds, CPU seconds
        ProcessCollector(registry=self.registry, pid=(lambda: pid) if pid else (lambda: "self"))
        self._read_now = _ReadNow()
        self.registry.register(self._read_now)
        self._scrape = threading.Lock()

    def render(self, counts: Counts, gauges: list[Gauge]) -> str:
        """`gauges`: (name, type, help, [(labels, value)]) read from the daemon at scrape time; any number."""
        with self._scrape:
            d = self._decisions
            d.by_reason, d.latency, d.latency_sum = counts
            self._read_now.gauges = gauges
            try:
                return generate_latest(self.registry).decode()
            finally:
                self._read_now.gauges = []
