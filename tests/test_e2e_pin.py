"""P34 end to end: the daemon, serial keypad readers sending a card then `PIN:<digits>`, the Modbus door I/O
module read back, a mosquitto with the central simulator (which sets the PIN) and a central peer receiving
`alarm.duress`, and the API as a guard and a supervisor call it. The PINs never reach the daemon's log."""
from __future__ import annotations

import json

import httpx
import pytest

from mqttkit import Peer, event
from sitekit import gatekeeper, metric, wait_until
from test_e2e_gate import Gate
from test_link import local_version, start_central
from test_pin import PEPPER, pin_site

pytestmark = pytest.mark.e2e

OFFICE_COIL = 1  # sitekit's office door; its `in` reader has a keypad here and the door needs the PIN
CARD, OTHER = "04A1B2C3", "0AC0FFEE"
GOOD, DURESS, WRONG = "73914682", "58206137", "40404040"  # digits no log line would hold by chance


@pytest.fixture
def site(tmp_path, procs, broker):
    s = pin_site(tmp_path, broker_port=broker.port, api=True)
    s.config.write_text(s.config.read_text() + '\n[log]\nlevel = "debug"\n')  # every line the gate can say
    data = tmp_path / "central.jsonl"
    data.write_text("".join(json.dumps({"credential": f"badge:{c}", "holder": h, "category": "staff",
                                        "areas": ["site"]}) + "\n" for c, h in ((CARD, "h-1"), (OTHER, "h-2"))))
    central = start_central(procs, broker, "--data", str(data), "--version", "1",
                            "--pin-pepper-file", str(s.dir / "pin.pepper"))
    peer = Peer(broker.port, "acs/test/gate-1/events/#")  # the central system's consumer
    g = Gate(s, procs)
    g.start_hardware()
    g.start_daemon()
    g.daemon.wait_for("io module io1 ready", already=True)
    central.send("snapshot gate-1")
    wait_until(lambda: local_version(g) == 1, what="the first snapshot")
    central.send(f"pin badge:{CARD} {GOOD} {DURESS}")  # the central system sets the PIN and the duress PIN
    central.wait_for("central batch 1->2")
    wait_until(lambda: local_version(g) == 2, what="the PIN's batch")
    yield g, central, peer
    g.io.close()
    peer.close()


def card_then_pin(g, card, digits):
    office = g.readers["office-in"]
    office.send(card)
    office.send(f"PIN:{digits}")  # typed after the card, on the same line


def test_p34_card_and_pin_duress_and_who_reads_the_alarm(site):
    g, central, peer = site
    url = g.site.api_url
    guard = {"Authorization": f"Bearer {g.site.token('guard', 'g-wang')}"}
    supervisor = {"Authorization": f"Bearer {g.site.token('supervisor', 's-li')}"}
    g.settle()

    # the card alone does not open: it waits for its PIN, and is refused when 10 s run out
    before = g.unlocks(OFFICE_COIL)
    g.readers["office-in"].send(CARD)
    refused = event(peer, "access.denied", credential_ref=f"badge:{CARD}")["data"]
    assert refused["reason"] == "pin_required" and g.unlocks(OFFICE_COIL) == before

    # a wrong PIN
    card_then_pin(g, CARD, WRONG)
    assert event(peer, "access.denied", reason="pin_incorrect")["data"]["credential_ref"] == f"badge:{CARD}"
    assert g.unlocks(OFFICE_COIL) == before

    # the good PIN opens the door
    card_then_pin(g, CARD, GOOD)
    good = event(peer, "access.granted", credential_ref=f"badge:{CARD}")
    wait_until(lambda: g.unlocks(OFFICE_COIL) == before + 1, what="the office unlocked by card and PIN")
    g.settle()

    # the duress PIN opens it the same way, and the central system is told at once
    card_then_pin(g, CARD, DURESS)
    alarm = event(peer, "alarm.duress")
    assert {k: alarm["data"][k] for k in ("door", "holder", "credential_ref", "priority")} == \
        {"door": "office", "holder": "h-1", "credential_ref": f"badge:{CARD}", "priority": "high"}
    granted = peer.wait(lambda _: [m for m in peer.events() if m["type"] == "access.granted"
                                   and m["seq"] > good["seq"]], what="the duress grant")
    assert len(granted) == 1 and granted[0]["seq"] < alarm["seq"]  # in the journal's order, whatever went first
    same = {k: v for k, v in granted[0]["data"].items() if k not in ("decision_us", "flags")}
    assert same == {k: v for k, v in good["data"].items() if k not in ("decision_us", "flags")}
    assert "duress" not in json.dumps(granted[0]["data"])
    wait_until(lambda: g.unlocks(OFFICE_COIL) == before + 2, what="the office unlocked by the duress PIN")

    # a later event, so that a feed which skipped the alarm shows it went past it
    g.readers["main-in"].send(OTHER)
    later = event(peer, "access.granted", credential_ref=f"badge:{OTHER}")

    # GET /events: a supervisor's page has the alarm, a guard's never
    def types(headers):
        r = httpx.get(url + "/events", params={"after_seq": 0, "limit": 1000}, headers=headers, timeout=10)
        assert r.status_code == 200, r.text
        return [(e["seq"], e["type"]) for e in r.json()]
    assert (alarm["seq"], "alarm.duress") in types(supervisor)
    assert "alarm.duress" not in [t for _, t in types(guard)] and (later["seq"], "access.granted") in types(guard)

    # the live stream carries it to nobody, a supervisor included
    for who in (guard, supervisor):
        seen = []
        with httpx.stream("GET", url + "/events/stream", params={"after_seq": 0}, headers=who, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    e = json.loads(line[6:])
                    seen.append(e["type"])
                    if e["seq"] >= later["seq"]:
                        break
        assert "access.granted" in seen and "alarm.duress" not in seen

    # /metrics says nothing of it; an export leaves it out
    text = httpx.get(url + "/metrics", timeout=10).text
    assert "duress" not in text and metric(text, "gatekeeper_decisions_total", result="granted") is not None
    out = gatekeeper("events", "--config", str(g.site.config))
    assert out.returncode == 0, out.stderr
    assert "alarm.duress" not in out.stdout and f'"seq":{later["seq"]}' in out.stdout.replace(" ", "")

    # a PIN with no card before it is ignored, and said so without its digits
    g.readers["office-in"].send(f"PIN:{GOOD}")
    g.daemon.wait_for("a PIN with no card waiting for it: ignored")

    # the digits never reached the daemon's log, at debug level, nor any event
    log = "\n".join(g.daemon.output)
    for digits in (GOOD, DURESS, WRONG):
        assert digits not in log, f"PIN digits {digits} in the daemon's log"
        assert digits not in json.dumps(peer.events())
