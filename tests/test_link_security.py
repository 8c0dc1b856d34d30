"""Transport security: the broker with a password and mutual TLS (without them the gate is refused,
says so once with device.fault, and keeps deciding); the local API over TLS beyond loopback."""
from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from simulators.mosquitto import Broker
from sitekit import WAIT_S, JournalWatch, make_site, wait_until
from test_e2e_gate import STAFF, staffed_gate

pytestmark = pytest.mark.e2e


def _cert(name: str, issuer_key, issuer_name, key, ca: bool = False, ip: str | None = None):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(path, cert=None, key=None):
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, None, ca_key, ca=True)
    files = {"ca": d / "ca.pem"}
    _write(files["ca"], cert=ca)
    for name, ip in (("server", "127.0.0.1"), ("gate", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(d / f"{name}.pem", cert=_cert(name, ca_key, ca.subject, key, ip=ip))
        _write(d / f"{name}.key", key=key)
        files[name], files[f"{name}_key"] = d / f"{name}.pem", d / f"{name}.key"
    return files


def test_gate_connects_with_password_and_client_certificate(tmp_path, procs, pki):
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "gate-1", "s3cret"], check=True, capture_output=True)
    broker = Broker(tmp_path / "broker", anonymous=False, listener_extra=(
        f"cafile {pki['ca']}\ncertfile {pki['server']}\nkeyfile {pki['server_key']}\nrequire_certificate true\n"
        f"password_file {pw}\n")).start()
    try:
        (tmp_path / "mqtt-password").write_text("s3cret\n")
        extra = (f'username = "gate-1"\npassword_file = "{tmp_path / "mqtt-password"}"\ntls = true\n'
                 f'ca_file = "{pki["ca"]}"\ncert_file = "{pki["gate"]}"\nkey_file = "{pki["gate_key"]}"\n')
        g = staffed_gate(make_site(tmp_path / "site", broker_port=broker.port, mqtt_extra=extra), procs)
        g.scan("main-in", STAFF)
        log = (tmp_path / "broker" / "mosquitto.log")
        # the broker saw gate-1 authenticate over TLS with its certificate
        wait_until(lambda: "u'gate-1'" in log.read_text(), what="the broker logging gate-1's login")
        site = g.site
        faults = [d for _, t, d in JournalWatch(site.db).rows() if t == "device.fault" and d["device"] == "broker"]
        assert not faults
        g.io.close()
    finally:
        broker.stop()


def test_a_wrong_password_is_one_fault_and_the_gate_keeps_deciding(tmp_path, procs):
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "gate-1", "right"], check=True, capture_output=True)
    broker = Broker(tmp_path / "broker", anonymous=False, listener_extra=f"password_file {pw}\n").start()
    try:
        (tmp_path / "mqtt-password").write_text("wrong\n")
        extra = f'username = "gate-1"\npassword_file = "{tmp_path / "mqtt-password"}"\n'
        g = staffed_gate(make_site(tmp_path / "site", broker_port=broker.port, mqtt_extra=extra), procs)
        site = g.site
        _, _, fault = g.journal.next("device.fault", device="broker")
        assert "refused" in fault["error"] or "disconnected" in fault["error"]
        _, etype, _ = g.scan("main-in", STAFF)
        assert etype == "access.granted"
        assert "wrong" not in json.dumps(JournalWatch(site.db).rows())  # the secret never reaches the journal
        g.io.close()
    finally:
        broker.stop()


def test_the_api_beyond_loopback_is_served_over_tls_and_its_session_cookie_is_secure(tmp_path, procs, pki):
    import httpx
    site = make_site(tmp_path / "site", api=True)
    site.config.write_text(site.config.read_text().replace(
        "[api]\nport = 0\n",
        f'[api]\nbind = "0.0.0.0"\nport = 0\ntls_cert_file = "{pki["server"]}"\ntls_key_file = "{pki["server_key"]}"\n'))
    token = site.token("guard")
    staffed_gate(site, procs)
    url = site.api_url  # from the daemon's `gatekeeper api on https://0.0.0.0:PORT`
    assert url.startswith("https://")
    port = site.extra["api_port"]
    wait_until(lambda: _answers(url, pki["ca"]), what="the API over TLS")
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=pki["ca"]), timeout=WAIT_S) as client:
        r = client.post("/session", json={"token": token})
        assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()
    with pytest.raises(httpx.TransportError):  # no plain HTTP on that port
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)


def _answers(url: str, ca) -> bool:
    import httpx
    try:
        return httpx.get(url + "/health", verify=ssl.create_default_context(cafile=ca), timeout=10).status_code == 200
    except httpx.TransportError:
        return False
