"""Counters for `GET /metrics` in the Prometheus text format (version 0.0.4).

Kept by hand: a handful of series, updated on the decision path, where a dictionary increment costs
less than a client library's locks.
"""
from __future__ import annotations

import bisect

# decision latency buckets, seconds: the budget is 2 ms for a decision with its journal write
BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1)


class Metrics:
    def __init__(self) -> None:
        self.decisions: dict[tuple[str, str], int] = {}
        self.latency = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0

    def decided(self, result: str, reason: str, seconds: float) -> None:
        key = (result, reason)
        self.decisions[key] = self.decisions.get(key, 0) + 1
        self.latency[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def render(self, gauges: list[tuple[str, str, str, list[tuple[dict, float]]]]) -> str:
        """`gauges`: (name, type, help, [(labels, value)]) read from the daemon at scrape time."""
        out = ["# HELP gatekeeper_decisions_total Decisions by result (granted, denied, held) and reason code.",
               "# TYPE gatekeeper_decisions_total counter"]
        for (result, reason), n in sorted(self.decisions.items()):
            out.append(f'gatekeeper_decisions_total{{result="{result}",reason="{reason}"}} {n}')
        out += ["# HELP gatekeeper_decision_seconds Time from credential to decision, journal write included.",
                "# TYPE gatekeeper_decision_seconds histogram"]
        cumulative = 0
        for le, n in zip(BUCKETS, self.latency):
            cumulative += n
            out.append(f'gatekeeper_decision_seconds_bucket{{le="{le}"}} {cumulative}')
        out.append(f'gatekeeper_decision_seconds_bucket{{le="+Inf"}} {self.latency_count}')
        out.append(f"gatekeeper_decision_seconds_sum {self.latency_sum:.6f}")
        out.append(f"gatekeeper_decision_seconds_count {self.latency_count}")
        for name, kind, help_, samples in gauges:
            out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
            for labels, value in samples:
                lab = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
                out.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")
        return "\n".join(out) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
