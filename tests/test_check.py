"""`gatekeeper run --check` on a config full of mistakes: every problem in one run, one line each, with its
file, line and key, as the service user meets the files (here `nobody`, as root runs the check)."""
from __future__ import annotations

import datetime
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.passes.keys import generate_keypair
from sitekit import gatekeeper

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="gives files to another user, as an installer does")

# Each mistake is marked with a comment, which the expected lines below find: the line numbers are the
# file's own, counted here without the code under test.
CONFIG = """\
[site]
id = "test"
gate = "gate-1"
timezone = "Mars/Base"                # M:timezone

[policy]
lobby = "site/hall"                   # M:lobby

[areas]
tree = ["site", "site/lobby", "site/office"]

[schedules.visiting_hours]
start = "08:00"
end = "25:00"                         # M:end

[storage]
path = "state/gatekeeper.db"

[[io_modules]]
name = "io1"
host = "127.0.0.1"
port = 1502

[[io_modules]]
name = "relays"
type = "relay_serial"
device = "/dev/ttyGK1"

[site_inputs]
io = "io1"
fire_input = 100                      # M:fire

[[doors]]
name = "main"
area = "site/lobby"
io = "io1"
lock_coil = 0
contact_input = 100
pulse_s = -1                          # M:pulse

[[doors]]
name = "office"
area = "site/attic"                   # M:attic
io = "io1"
lock_coil = 0                         # M:coil
held_open = 30                        # M:typo

[[readers]]
name = "main-in"
url = "/dev/ttyGK0"
door = "main"
direction = "in"

[[readers]]
name = "main-out"
url = "/dev/ttyGK0"                   # M:line
door = "main"
direction = "sideways"                # M:direction

[[readers]]
name = "office-in"
url = "/dev/ttyGK1"                   # M:relay-line
door = "io1"                          # M:kind
direction = "in"

[[readers]]
name = "side-in"
type = "osdp"
url = "/dev/ttyGK2"
scbk_file = "secrets/side-in.scbk"    # M:scbk
door = "back"                         # M:back
direction = "in"

[[keys]]
kid = "central-1"
public_key_file = "keys/missing.pub"  # M:missing

[[keys]]
kid = "central-2"
public_key_file = "keys/ec.pub"       # M:ec

[[keys]]
kid = "central-3"
public_key_file = "keys/garbage.pub"  # M:garbage

[[keys]]
kid = "central-4"
public_key_file = "keys/central-4.pub"

[mqtt]
username = "gate-1"
password_file = "secrets/mqtt-password"   # M:password
tls = true
ca_file = "tls/ca.pem"
cert_file = "tls/gate.pem"            # M:mismatch
key_file = "secrets/gate.key"

[api]
tls_cert_file = "tls/old.pem"         # M:expired
tls_key_file = "secrets/old.key"

[walkin]
id_secret_file = "secrets/id.secret"  # M:empty
kid = "central-4"                     # M:walkin-kid
"""


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(key, name: str, issuer_key=None, issuer: str | None = None, days: tuple[int, int] = (-1, 365)) -> bytes:
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or name)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now + datetime.timedelta(days=days[0]))
         .not_valid_after(now + datetime.timedelta(days=days[1])))
    return b.sign(issuer_key or key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def site_dir():
    """A folder the service user can walk into (pytest's own is root's alone), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="gk-check-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def _write(path: Path, data: bytes, mode: int, owner: int = 0) -> None:
    path.parent.mkdir(mode=0o755, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.chown(path, owner, owner)


def test_check_says_every_problem_at_once_with_its_line(site_dir):
    nobody = pwd.getpwnam("nobody").pw_uid
    d = site_dir
    (d / "site.toml").write_text(CONFIG)
    (d / "site.toml").chmod(0o640)  # root's group, not the service user's
    (d / "state").mkdir()
    os.chown(d / "state", nobody, nobody)  # the service user's own state folder
    (d / "keys").mkdir(mode=0o755)
    generate_keypair("central-4", d / "keys")
    _write(d / "keys" / "ec.pub", ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    _write(d / "keys" / "garbage.pub", b"-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n", 0o644)
    _write(d / "secrets" / "side-in.scbk", b"00112233445566778899aabbccddeeff\n", 0o600)  # root's alone
    _write(d / "secrets" / "mqtt-password", b"a-broker-password\n", 0o644, nobody)
    _write(d / "secrets" / "id.secret", b"\n", 0o600, nobody)
    ca, gate, other, old = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    _write(d / "tls" / "ca.pem", _cert(ca, "site CA"), 0o644)
    _write(d / "tls" / "gate.pem", _cert(gate, "gate-1", ca, "site CA"), 0o644)
    _write(d / "secrets" / "gate.key", _pem_key(other), 0o600, nobody)  # not the certificate's key
    _write(d / "tls" / "old.pem", _cert(old, "gate-1", days=(-400, -35)), 0o644)
    _write(d / "secrets" / "old.key", _pem_key(old), 0o600, nobody)
    expired = x509.load_pem_x509_certificate((d / "tls" / "old.pem").read_bytes()).not_valid_after_utc

    r = gatekeeper("run", "--config", str(d / "site.toml"), "--check", "--user", "nobody")

    lines = CONFIG.splitlines()

    def at(mark: str) -> str:
        n = next(i for i, line in enumerate(lines, 1) if line.endswith(f"# M:{mark}"))
        return f"{d / 'site.toml'}:{n}:"
    s = d / "secrets"
    expected = [
        f"{d / 'site.toml'}:1: (top level): cannot read {d / 'site.toml'} as user nobody: Permission denied",
        f"{at('timezone')} site.timezone: unknown time zone 'Mars/Base' (use an IANA name such as 'Asia/Shanghai')",
        f"{at('lobby')} policy.lobby: 'site/hall' is not in areas.tree",
        f"{at('end')} schedules.visiting_hours.end: String should match pattern "
        "'^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$', not '25:00'",
        f"{at('fire')} site_inputs.fire_input: input 100 of 'io1' is also door main's contact_input: "
        "one input, one use",
        f"{at('pulse')} doors[0].pulse_s: Input should be greater than 0, not -1",
        f"{at('attic')} doors[1].area: 'site/attic' is not in areas.tree",
        f"{at('coil')} doors[1].lock_coil: coil 0 of 'io1' is also door main's lock_coil: one coil, one use",
        f"{at('typo')} doors[1].held_open: unknown key (a typo?)",
        f"{at('line')} readers[1].url: /dev/ttyGK0 is also opened by readers[0] (main-in): a serial line has one user",
        f"{at('direction')} readers[1].direction: Input should be 'in' or 'out', not 'sideways'",
        f"{at('relay-line')} readers[2].url: /dev/ttyGK1 is also opened by io_modules[1] (relays): a serial line "
        "has one user",
        f"{at('kind')} readers[2].door: 'io1' is an I/O module, not a door: name one of [[doors]]",
        f"{at('scbk')} readers[3].scbk_file: cannot read {s}/side-in.scbk as user nobody: Permission denied "
        "(mode 0600, owner root:root)",
        f"{at('back')} readers[3].door: 'back' is not a doors name",
        f"{at('missing')} keys[0].public_key_file: cannot read {d}/keys/missing.pub as user nobody: "
        "No such file or directory",
        f"{at('ec')} keys[1].public_key_file: {d}/keys/ec.pub: holds a key of type EC secp256r1; passes are "
        "signed with Ed25519 (SPEC §3)",
        f"{at('garbage')} keys[2].public_key_file: {d}/keys/garbage.pub: not a PEM public key",
        f"{at('password')} mqtt.password_file: {s}/mqtt-password is readable by every user (mode 0644): chmod o-r "
        "it, or hand it over with LoadCredential=",
        f"{at('mismatch')} mqtt.cert_file: the certificate in {d}/tls/gate.pem does not match the private key in "
        f"{s}/gate.key",
        f"{at('expired')} api.tls_cert_file: {d}/tls/old.pem: the certificate expired on {expired:%Y-%m-%d}",
        f"{at('empty')} walkin.id_secret_file: {s}/id.secret is empty",
        f"{at('walkin-kid')} walkin.kid: 'central-4' is also the kid of a key in [[keys]]",
    ]
    assert r.stderr.splitlines() == expected, "\n".join(r.stderr.splitlines())
    assert r.returncode == 2 and r.stdout == ""


def test_check_as_root_reads_as_the_current_user_when_there_is_no_service_user(tmp_path):
    """No `gatekeeper` user on this machine (the package makes it): the user running the check counts, and an
    unknown --user is named rather than guessed."""
    from edge.config.access import SERVICE_USER, service_user
    try:
        pwd.getpwnam(SERVICE_USER)
        pytest.skip("this machine has the service user")
    except KeyError:
        pass
    assert service_user().uid == os.geteuid()
    r = gatekeeper("run", "--config", str(tmp_path / "site.toml"), "--check", "--user", "no-such-user-here")
    assert r.returncode == 2 and "--user no-such-user-here: no such user" in r.stderr


@pytest.mark.parametrize("wrong", [5, "x", [], {}, [5], [{"name": 5}], True, "a\u0000b"])
def test_a_value_of_the_wrong_type_anywhere_is_a_problem_never_a_crash(tmp_path, wrong):
    """Cross-references and file checks read the raw TOML beside the field errors: whatever shape a section
    has, they skip what they cannot read and leave it to the field errors."""
    import tomllib
    from edge.config.access import service_user
    from edge.config.filecheck import file_problems
    from edge.config.files import validate
    from sitekit import make_site
    site = make_site(tmp_path / "site", walkin=True, api=True)
    raw = tomllib.loads(site.config.read_text())
    paths = [(k,) for k in raw] + [(k, k2) for k, v in raw.items() if isinstance(v, dict) for k2 in v]
    paths += [(k, 0, k2) for k, v in raw.items() if isinstance(v, list) for k2 in v[0]]
    for path in paths:
        bad = tomllib.loads(site.config.read_text())
        node = bad
        for step in path[:-1]:
            node = node[step]
        was, node[path[-1]] = node[path[-1]], wrong
        _, problems = validate(bad)
        problems += file_problems(bad, site.dir, service_user())
        kind = {int: float, bool: float}  # numbers stand for numbers (pydantic's lax mode): no mistake
        if kind.get(type(wrong), type(wrong)) != kind.get(type(was), type(was)):
            assert problems, path  # a value of another type is named, never silently taken
