"""The site config as an installer meets it: `--check`, and a daemon that refuses a bad file."""
from __future__ import annotations

from pathlib import Path

import pytest

from sitekit import ROOT, gatekeeper, make_site


def test_demo_and_example_configs_are_valid(tmp_path):
    site = make_site(tmp_path / "site")  # has its key files in place
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
    example = ROOT / "config" / "site.example.toml"
    from edge.config import load_config
    cfg, _ = load_config(example)  # keys are files on the gate; the structure must hold here
    assert cfg.schedule_windows()["visiting_hours"][1:] == (8 * 60, 21 * 60 + 30)


@pytest.mark.parametrize("change, expected", [
    (('timezone = "Asia/Shanghai"', 'timezone = "Mars/Base"'), ":5: site.timezone: unknown time zone 'Mars/Base'"),
    (('pulse_s = 0.3', 'pulse_secs = 0.3'), ":44: doors[0].pulse_secs: unknown key (a typo?)"),
    (('io = "io1"\nlock_coil = 1', 'io = "io2"\nlock_coil = 1'), ":49: doors[1].io: 'io2' is not an io_modules name"),
    (('door = "office"', 'door = "back"'), ":69: readers[2].door: 'back' is not a doors name"),
    (('[site]', '[site'), ":2: (top level): not valid TOML"),
])
def test_a_bad_config_is_refused_naming_file_key_and_problem(tmp_path, change, expected):
    site = make_site(tmp_path / "site")
    text = site.config.read_text()
    assert change[0] in text
    site.config.write_text(text.replace(change[0], change[1], 1))
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode == 2
    assert str(site.config) in r.stderr and expected in r.stderr, r.stderr
    r = gatekeeper("run", "--config", str(site.config), timeout=30)  # the daemon itself will not start either
    assert r.returncode == 2 and expected in r.stderr and "ready" not in r.stdout


def test_a_missing_key_file_is_refused(tmp_path):
    site = make_site(tmp_path / "site")
    (site.dir / "keys" / "central-1.pub").unlink()
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode == 2
    assert ":74: keys[0].public_key_file: cannot read " in r.stderr and "central-1.pub: No such file" in r.stderr


def test_a_missing_config_file_is_named(tmp_path):
    r = gatekeeper("run", "--config", str(Path(tmp_path) / "nope.toml"), "--check")
    assert r.returncode == 2 and "nope.toml" in r.stderr


def test_an_osdp_reader_without_its_secure_channel_key_is_refused(tmp_path):
    site = make_site(tmp_path / "site")
    site.config.write_text(site.config.read_text() + '''
[[readers]]
name = "side-in"
type = "osdp"
url = "/dev/ttyUSB3"
scbk_file = "keys/side-in.scbk"
door = "main"
direction = "in"
''')
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode == 2 and "readers[3].scbk_file: cannot read " in r.stderr and "side-in.scbk" in r.stderr
    (site.dir / "keys" / "side-in.scbk").write_text("00112233")
    (site.dir / "keys" / "side-in.scbk").chmod(0o600)
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode == 2 and "4 bytes, not 16" in r.stderr
    (site.dir / "keys" / "side-in.scbk").write_text("00112233445566778899aabbccddeeff\n")
    assert gatekeeper("run", "--config", str(site.config), "--check").returncode == 0


def test_an_api_beyond_loopback_without_tls_is_refused(tmp_path):
    site = make_site(tmp_path / "site")
    site.config.write_text(site.config.read_text() + '\n[api]\nbind = "0.0.0.0"\nport = 8443\n')
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode == 2 and "api" in r.stderr and "tls_cert_file" in r.stderr


def test_p13_a_walkin_gate_without_its_site_secret_is_refused_at_check(tmp_path):
    site = make_site(tmp_path / "site", walkin=True)
    assert gatekeeper("run", "--config", str(site.config), "--check").returncode == 0
    (site.dir / "id.secret").unlink()
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode != 0 and "walkin.id_secret_file: cannot read " in r.stderr
    (site.dir / "id.secret").write_text("short\n")
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode != 0 and "holds 5 bytes: the secret needs at least 16" in r.stderr


def test_p13_a_damaged_walkin_key_stops_the_daemon_naming_the_file(tmp_path):
    site = make_site(tmp_path / "site", walkin=True)
    (site.dir / "walkin.key").write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n")
    r = gatekeeper("run", "--config", str(site.config), timeout=60)
    assert r.returncode == 2 and "walkin.key" in r.stderr and "Traceback" not in r.stderr


def test_check_names_every_missing_or_unreadable_file_at_once(tmp_path):
    """An installer runs --check once and sees every file to supply: the broker's password and CA, the
    API's certificate and key, a pass key: each named with its key."""
    site = make_site(tmp_path / "site")
    (site.dir / "keys" / "central-1.pub").unlink()
    site.config.write_text(site.config.read_text() + '''
[mqtt]
username = "gate-1"
password_file = "secrets/mqtt-password"
tls = true
ca_file = "secrets/ca.pem"

[api]
bind = "0.0.0.0"
tls_cert_file = "secrets/api.pem"
tls_key_file = "secrets/api.key"
''')
    r = gatekeeper("run", "--config", str(site.config), "--check")
    assert r.returncode == 2
    for where, key in (("keys[0]", "public_key_file"), ("mqtt", "password_file"), ("mqtt", "ca_file"),
                       ("api", "tls_cert_file"), ("api", "tls_key_file")):
        assert f"{where}.{key}: cannot read " in r.stderr, (key, r.stderr)
    assert "Traceback" not in r.stderr


def test_events_on_a_missing_database_makes_none(tmp_path):
    site = make_site(tmp_path / "site")
    r = gatekeeper("events", "--config", str(site.config))
    assert r.returncode == 1 and "no database" in r.stderr
    assert not site.db.exists()


def test_spec2_events_carry_one_source_whatever_the_topic_root(tmp_path):
    """The envelope's `source` is the gate's topic prefix: the CLI (and the API and MQTT, through the same
    `event_source`) follow a site's `topic_root`, not a hard-coded `acs`."""
    import json
    site = make_site(tmp_path / "site", broker_port=1)
    text = site.config.read_text()
    assert "[mqtt]" in text
    site.config.write_text(text.replace("[mqtt]\n", '[mqtt]\ntopic_root = "plant"\n', 1))
    r = site.import_lines([{"credential": "badge:04A1B2C3", "holder": "h-1", "category": "staff", "areas": ["site"]}])
    assert r.returncode == 0, r.stderr
    r = gatekeeper("events", "--config", str(site.config))
    assert r.returncode == 0, r.stderr
    sources = {json.loads(line)["source"] for line in r.stdout.splitlines()}
    assert sources == {"plant/test/gate-1"}
