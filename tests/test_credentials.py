"""Secrets named `credentials/NAME` are the systemd credentials the unit hands over (edge/config/credentials.py):
read from $CREDENTIALS_DIRECTORY under the service, and from the root-only folder beside the config, as
systemd reads it, by a check run from a shell."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sitekit import ID_SECRET, ROOT, make_site

EXAMPLE = ROOT / "config" / "site.example.toml"


def gatekeeper(*args: str, env: dict) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    return subprocess.run([sys.executable, "-m", "edge.cli", "--log-level", "warning", *args], cwd=ROOT,
                          env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_a_credential_name_is_what_systemd_calls_the_file_in_the_folder():
    from edge.config.credentials import credential_id
    assert credential_id("credentials/mqtt-password") == "credentials_mqtt-password"
    assert credential_id("credentials/tls/gate.key") == "credentials_tls_gate.key"  # systemd: / as _
    for plain in ("/etc/gatekeeper/credentials/x", "id.secret", "secrets/id.secret", "credentials",
                  "credentials/../id.secret"):
        assert credential_id(plain) is None, plain


def test_the_example_reads_each_secret_from_the_credentials_directory_under_the_service(tmp_path, monkeypatch):
    from edge.config import load_config
    from edge.config.credentials import credential_id
    creds = tmp_path / "creds"
    creds.mkdir()
    secrets = {"scbk": "credentials/lane-out.scbk", "password": "credentials/mqtt-password",
               "key": "credentials/north-gate.key", "id_secret": "credentials/id.secret"}
    for path in secrets.values():
        (creds / credential_id(path)).write_text("x")
    code = ("import json, sys; from edge.config import load_config; c, _ = load_config(sys.argv[1]); "
            "print(json.dumps({'scbk': [r.scbk_file for r in c.readers if r.scbk_file][0], "
            "'password': c.mqtt.password_file, 'key': c.mqtt.key_file, 'id_secret': c.walkin.id_secret_file, "
            "'plain': [c.mqtt.ca_file, c.mqtt.cert_file, c.keys[0].public_key_file]}))")
    r = subprocess.run([sys.executable, "-c", code, str(EXAMPLE)], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "CREDENTIALS_DIRECTORY": str(creds)}, timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    for what, path in secrets.items():
        assert got[what] == str(creds / credential_id(path)), what
    # certificates and public keys are no secrets: still plain files from the config's folder
    assert got["plain"] == ["tls/ca.pem", "tls/north-gate.pem", "keys/central-1.pub"]
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    cfg, _ = load_config(EXAMPLE)  # outside the service: the names, files beside the config
    assert cfg.mqtt.password_file == secrets["password"]


@pytest.fixture
def site():
    """A site whose walk-in secret is a credential, in a folder the user nobody can walk into."""
    d = Path(tempfile.mkdtemp(prefix="gk-creds-"))
    d.chmod(0o755)
    s = make_site(d / "site", walkin=True)
    (s.dir / "id.secret").unlink()
    s.config.write_text(s.config.read_text().replace('id_secret_file = "id.secret"',
                                                     'id_secret_file = "credentials/id.secret"'))
    yield s
    shutil.rmtree(d)


@pytest.mark.skipif(os.geteuid() != 0, reason="checks as another user, as root does for the service user")
def test_check_from_a_shell_reads_a_credential_as_systemd_does_not_as_the_service_user(site):
    nobody = pwd.getpwnam("nobody").pw_uid
    for p in (site.dir, site.dir / "keys"):
        p.chmod(0o755)
    (site.dir / "keys" / "central-1.pub").chmod(0o644)
    os.chown(site.dir, nobody, nobody)  # the state (its database) is the service user's
    folder = site.dir / "credentials"
    check = ("run", "--config", str(site.config), "--check", "--user", "nobody")
    r = gatekeeper(*check, env={})
    assert r.returncode == 2 and f"cannot read {folder / 'id.secret'}: No such file" in r.stderr, r.stderr
    folder.mkdir(mode=0o700)  # root's alone, as the package makes it: the service user never reads it
    (folder / "id.secret").write_text(ID_SECRET + "\n")
    (folder / "id.secret").chmod(0o600)
    r = gatekeeper(*check, env={})
    assert r.returncode == 0, r.stderr
    # a plain secret file in the same place would be the service user's to read: refused
    site.config.write_text(site.config.read_text().replace('"credentials/id.secret"', f'"{folder}/id.secret"'))
    r = gatekeeper(*check, env={})
    assert r.returncode == 2 and "as user nobody: Permission denied" in r.stderr, r.stderr


def test_check_under_the_service_reads_the_credential_it_was_handed_and_names_one_it_was_not(site, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    check = ("run", "--config", str(site.config), "--check")
    r = gatekeeper(*check, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert r.returncode == 2, r.stderr
    assert (f"cannot read {site.dir / 'credentials' / 'id.secret'}: not handed over by systemd as the credential "
            "credentials_id.secret") in r.stderr, r.stderr
    (creds / "credentials_id.secret").write_text(ID_SECRET + "\n")
    (creds / "credentials_id.secret").chmod(0o400)
    r = gatekeeper(*check, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert r.returncode == 0, r.stderr
