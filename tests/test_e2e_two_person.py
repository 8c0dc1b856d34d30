"""P33 and P31 end to end: the daemon, the Modbus door I/O module, badge readers on serial lines, a mosquitto and a
central peer, all real processes; the locks read back over Modbus (each lock coil's unlock counter), the events as
the central system receives them (checked against docs/asyncapi.yaml at the end of the test)."""
from __future__ import annotations

import pytest

from mqttkit import event
from sitekit import NO_PORT, wait_until
from test_e2e_gate import STAFF, SUPERVISOR, _denied_without_pulse, running_with_central
from test_gate_p31_p33 import two_person_site

pytestmark = pytest.mark.e2e

CANTEEN, VAULT = 3, 4  # lock coils (test_gate_p31_p33.DOORS)


@pytest.fixture
def running(tmp_path, procs, broker):
    site = two_person_site(tmp_path / "site", broker_port=broker.port)
    site.reader_ports.update({name: NO_PORT for name in ("canteen-in", "vault-in", "vault-out", "cage-in")})
    yield from running_with_central(site, procs, broker.port)


def test_p33_two_badges_at_a_two_person_door_make_one_unlock_pulse(running):
    g, central = running
    wait_until(lambda: g.locked(VAULT), what="the vault locked")
    before = g.unlocks(VAULT)
    # the first alone: refused, nothing opens (the probe at the main door shows the decision loop moved on)
    _denied_without_pulse(g, "vault-in", STAFF, VAULT, "second_person_required")
    _, etype, data = g.scan("vault-in", SUPERVISOR)
    assert (etype, data["holder"], data["partner_ref"]) == ("access.granted", "h-2", f"badge:{STAFF}")
    wait_until(lambda: g.unlocks(VAULT) == before + 1, what="the pair's one unlock")
    first = event(central, "access.granted", door="vault", holder="h-1")["data"]
    assert (first["flags"], first["partner_ref"]) == (["two_person_first"], f"badge:{SUPERVISOR}")
    assert event(central, "access.denied", door="vault", holder="h-1")["data"]["reason"] == "second_person_required"
    wait_until(lambda: g.locked(VAULT), what="the vault locked again after its pulse")
    # a scan at the main door is decided after both grants: had the pair pulsed twice, it would show by now
    _, etype, _ = g.scan("main-in", STAFF)
    assert etype == "access.granted"
    assert g.unlocks(VAULT) == before + 1


def test_p31_a_timed_door_refuses_the_same_badge_again_and_stays_locked(running):
    g, central = running
    wait_until(lambda: g.locked(CANTEEN), what="the canteen locked")
    before = g.unlocks(CANTEEN)
    _, etype, data = g.scan("canteen-in", STAFF)
    assert etype == "access.granted" and "to_area" not in data
    wait_until(lambda: g.unlocks(CANTEEN) == before + 1, what="the canteen's unlock")
    wait_until(lambda: g.locked(CANTEEN), what="the canteen locked again after its pulse")
    _denied_without_pulse(g, "canteen-in", STAFF, CANTEEN, "antipassback")
    assert g.unlocks(CANTEEN) == before + 1
    assert "to_area" not in event(central, "access.granted", door="canteen")["data"]
