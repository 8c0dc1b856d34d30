"""/metrics through prometheus-client: the decision counters, gauges read at scrape time, the process's own."""
from __future__ import annotations

import os

from prometheus_client.parser import text_string_to_metric_families

from edge.core.metrics import Exposition, Metrics
from sitekit import metric


def text_of(m: Metrics, gauges: list) -> str:
    """The text the API process makes of this gate's counts and `gauges`."""
    return Exposition().render(m.snapshot(), gauges)


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_decisions_and_latency_are_exposed_under_their_names_and_labels():
    m = Metrics()
    m.decided("denied", "unknown_credential", 0.0003)
    m.decided("granted", "ok", 0.00002)
    m.decided("granted", "ok", 0.004)
    text = text_of(m, [])
    fams = _families(text)
    assert fams["gatekeeper_decisions"].type == "counter"
    assert metric(text, "gatekeeper_decisions_total", result="granted", reason="ok") == 2
    assert metric(text, "gatekeeper_decisions_total", result="denied", reason="unknown_credential") == 1
    assert fams["gatekeeper_decision_seconds"].type == "histogram"
    assert metric(text, "gatekeeper_decision_seconds_bucket", le="5e-05") == 1  # cumulative, as Prometheus reads it
    assert metric(text, "gatekeeper_decision_seconds_bucket", le="0.0005") == 2
    assert metric(text, "gatekeeper_decision_seconds_bucket", le="+Inf") == 3
    assert metric(text, "gatekeeper_decision_seconds_count") == 3
    assert abs(metric(text, "gatekeeper_decision_seconds_sum") - 0.00432) < 1e-9


def test_gauges_read_at_scrape_time_take_any_number_and_labels():
    m = Metrics()
    text = text_of(m, [
        ("gatekeeper_device_up", "gauge", "1 when the device answers.", [({"device": "io1"}, 1.0),
                                                                         ({"device": 'odd "name"'}, 0.0)]),
        ("gatekeeper_outbox_depth", "gauge", "Not yet acknowledged.", []),
        ("gatekeeper_clock_offset_seconds", "gauge", "A gauge added later.", [({}, -0.25)]),
    ])
    assert metric(text, "gatekeeper_device_up", device="io1") == 1
    assert metric(text, "gatekeeper_device_up", device='odd "name"') == 0  # escaped, and read back
    assert metric(text, "gatekeeper_clock_offset_seconds") == -0.25
    assert _families(text)["gatekeeper_outbox_depth"].samples == []
    assert "gatekeeper_device_up" not in _families(text_of(m, []))  # read at each scrape, not kept


def test_process_metrics_are_present():
    text = text_of(Metrics(), [])
    assert metric(text, "process_resident_memory_bytes") > 10e6
    assert metric(text, "process_open_fds") > 0
    assert metric(text, "process_cpu_seconds_total") > 0


def test_two_gates_in_one_process_count_apart():
    a, b = Metrics(), Metrics()
    a.decided("granted", "ok", 0.0001)
    assert metric(text_of(a, []), "gatekeeper_decisions_total", result="granted", reason="ok") == 1
    assert metric(text_of(b, []), "gatekeeper_decisions_total") is None


def test_process_metrics_can_be_another_processes():
    """The API process makes the text; the process metrics it shows are the gate's, read by pid."""
    import subprocess
    import sys

    from edge.core.metrics import Exposition
    holder = subprocess.Popen([sys.executable, "-c", "import os, sys\nfds = [os.open('/dev/null', 0) for _ in range(300)]\n"
                               "print('ready', flush=True)\nsys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        text = Exposition(holder.pid).render(({}, [0] * 11, 0.0), [])
        assert metric(text, "process_open_fds") == len(os.listdir(f"/proc/{holder.pid}/fd")) >= 300
    finally:
        holder.stdin.close()
        holder.wait(30)
