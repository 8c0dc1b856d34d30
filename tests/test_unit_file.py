"""The shipped unit and the example config agree (credentials, devices, boot order), read as files."""
from __future__ import annotations

import tomllib
from pathlib import PurePosixPath

from sitekit import ROOT
from unitsandbox import unit_settings

UNIT = ROOT / "systemd" / "gatekeeper.service"
EXAMPLE = ROOT / "config" / "site.example.toml"
ETC = PurePosixPath("/etc/gatekeeper")  # where the package puts the example, and the unit reads site.toml

# What the README promises a gate can use, and the device group (/proc/devices) that DeviceAllow= names
# for it: USB serial adapters, USB modems, the SoCs' UARTs, and cameras.
PROMISED_DEVICES = {"/dev/ttyUSB": "char-ttyUSB", "/dev/ttyACM": "char-ttyACM", "/dev/ttyS": "char-ttyS",
                    "/dev/ttyAMA": "char-ttyAMA", "/dev/ttymxc": "char-ttymxc", "/dev/video": "char-video4linux"}


def example_secrets() -> dict[str, str]:
    """The example's secret keys (those edge/config/credentials.py reads as credentials) and their paths."""
    raw = tomllib.loads(EXAMPLE.read_text())
    out = {}
    for i, r in enumerate(raw.get("readers", [])):
        if "scbk_file" in r:
            out[f"readers[{i}].scbk_file"] = r["scbk_file"]
    for key in ("password_file", "key_file"):
        if key in raw.get("mqtt", {}):
            out[f"mqtt.{key}"] = raw["mqtt"][key]
    if "tls_key_file" in raw.get("api", {}):
        out["api.tls_key_file"] = raw["api"]["tls_key_file"]
    if "id_secret_file" in raw.get("walkin", {}):
        out["walkin.id_secret_file"] = raw["walkin"]["id_secret_file"]
    return out


def test_the_unit_loads_every_secret_the_example_names_under_the_name_the_config_reads():
    from edge.config.credentials import credential_id
    loads = unit_settings(UNIT.read_text())[("Service", "LoadCredential")]
    assert len(loads) == 1, "one folder of credentials, so a secret the site does not use cannot stop the start"
    cred, _, folder = loads[0].partition(":")
    folder = PurePosixPath(folder)
    secrets = example_secrets()
    assert {"readers[4].scbk_file", "mqtt.password_file", "mqtt.key_file", "walkin.id_secret_file"} <= set(secrets)
    for key, path in secrets.items():
        file = ETC / path
        assert folder in file.parents, f"{key} = {path!r} is not in the unit's credential folder {folder}"
        # systemd names a file of the folder <ID>_<its path in the folder, / as _>
        systemd_name = cred + "_" + str(file.relative_to(folder)).replace("/", "_")
        assert credential_id(path) == systemd_name, key
    assert "/run/credentials" not in EXAMPLE.read_text(), "secrets are named, not given as systemd's folder"


def test_the_unit_does_not_wait_for_the_network_at_boot():
    settings = unit_settings(UNIT.read_text())
    for key in ("After", "Wants", "Requires", "BindsTo", "Requisite"):
        for value in settings.get(("Unit", key), []):
            assert "network-online.target" not in value, f"{key}={value}: doors must not wait for the network"


def test_the_unit_admits_the_devices_the_readme_promises_and_nothing_else():
    readme = (ROOT / "README.md").read_text()
    settings = unit_settings(UNIT.read_text())
    allowed = {v.split()[0] for v in settings[("Service", "DeviceAllow")]}
    for device, group in PROMISED_DEVICES.items():
        assert device in readme, f"the README no longer promises {device}*"
        assert group in allowed, f"{device}* is promised but DeviceAllow= has no {group}"
    assert allowed == set(PROMISED_DEVICES.values())
    assert settings[("Service", "DevicePolicy")] == ["closed"]
    assert settings[("Service", "PrivateDevices")] == ["no"], "real devices must be visible to be admitted"
    groups = " ".join(settings[("Service", "SupplementaryGroups")]).split()
    assert {"dialout", "video"} <= set(groups)


def test_the_unit_gives_up_on_a_start_that_keeps_failing():
    settings = unit_settings(UNIT.read_text())
    interval = settings[("Unit", "StartLimitIntervalSec")][0]
    burst = int(settings[("Unit", "StartLimitBurst")][0])
    assert interval not in ("0", "infinity") and burst >= 1
    assert settings[("Service", "Restart")] == ["on-failure"]
    assert settings[("Service", "RestartPreventExitStatus")] == ["2"], "a refused config (exit 2) is not retried"


def test_systemctl_reload_sends_the_daemon_sighup():
    settings = unit_settings(UNIT.read_text())
    assert settings[("Service", "ExecReload")] == ["/bin/kill -HUP $MAINPID"]
