"""The files a config names: each exists, the service user can read it, and it holds what it should (an
Ed25519 key, a certificate matching its private key, a secret that is not empty and not readable by all)."""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from edge.config.access import User, group_name, owner_name, probe
from edge.config.credentials import credential_id, handed_over, under_service
from edge.config.problems import Problem
from edge.config.wiring import entries

# what a file must hold, by kind
SECRET_KINDS = {"secret", "scbk", "private_key", "ed25519_private"}
# the secrets the unit may hand over as systemd credentials (edge/config/credentials.py); the walk-in signing
# key is the daemon's own, made on its first start, so never one
CREDENTIAL_KINDS = {"secret", "scbk", "private_key"}


def resolve(base: Path, p: str) -> Path:
    """A path from the config, relative to the config file's folder."""
    q = Path(p)
    return q if q.is_absolute() else base / q


class _Wanted:
    def __init__(self, loc: tuple, path: Path, kind: str, fatal: bool, min_len: int = 1):
        self.loc, self.path, self.kind, self.fatal, self.min_len = loc, path, kind, fatal, min_len
        self.ok = False
        self.value = None  # the parsed certificate or key, for matching a pair
        self.credential: str | None = None  # the credential systemd makes of it, when systemd reads it as root


def file_problems(raw: dict, base: Path, user: User) -> list[Problem]:
    """Every problem with the files `raw` (the parsed TOML) names, as the daemon running as `user` meets them.
    A problem with the daemon's own files stops its start; the broker's and the API's only fault those parts,
    and a secret readable by all is said, not refused."""
    wanted: list[_Wanted] = []

    def want(loc, name, kind, fatal=True, min_len=1):
        if isinstance(name, str) and name:
            found = handed_over(name) if kind in CREDENTIAL_KINDS else None
            w = _Wanted(loc, found or resolve(base, name), kind, fatal, min_len)
            if found is None and kind in CREDENTIAL_KINDS:
                w.credential = credential_id(name)
            wanted.append(w)
            return w
        return None

    out: list[Problem] = []
    for i, r in entries(raw, "readers"):
        if r.get("type") == "osdp":
            want(("readers", i, "scbk_file"), r.get("scbk_file"), "scbk")
    for i, k in entries(raw, "keys"):
        want(("keys", i, "public_key_file"), k.get("public_key_file"), "ed25519_public")
        if isinstance(k.get("public_key"), str):
            err = _ed25519_public(k["public_key"].encode())
            if err:
                out.append(Problem(("keys", i, "public_key"), err))
    pairs = []
    mqtt = raw.get("mqtt") if isinstance(raw.get("mqtt"), dict) else None
    if mqtt is not None:
        want(("mqtt", "password_file"), mqtt.get("password_file"), "secret", fatal=False)
        want(("mqtt", "ca_file"), mqtt.get("ca_file"), "ca", fatal=False)
        pairs.append((want(("mqtt", "cert_file"), mqtt.get("cert_file"), "cert", fatal=False),
                      want(("mqtt", "key_file"), mqtt.get("key_file"), "private_key", fatal=False)))
    api = raw.get("api") if isinstance(raw.get("api"), dict) else None
    if api is not None:
        pairs.append((want(("api", "tls_cert_file"), api.get("tls_cert_file"), "cert", fatal=False),
                      want(("api", "tls_key_file"), api.get("tls_key_file"), "private_key", fatal=False)))
    storage = raw.get("storage") if isinstance(raw.get("storage"), dict) else {}
    db_name = storage.get("path", "/var/lib/gatekeeper/gatekeeper.db")
    db = resolve(base, db_name) if isinstance(db_name, str) else None
    walkin = raw.get("walkin") if isinstance(raw.get("walkin"), dict) else None
    made_here = []  # files the daemon makes when they are not there: their folder must take them
    if walkin is not None:
        # the site secret keys the id_hash HMAC on every gate: a short one could be guessed
        want(("walkin", "id_secret_file"), walkin.get("id_secret_file"), "secret", min_len=16)
        key = walkin.get("signing_key_file")
        key_path = resolve(base, key) if isinstance(key, str) else (db.parent / "walkin.key" if db else None)
        if key_path is not None and key_path.exists():
            want(("walkin", "signing_key_file"), str(key_path), "ed25519_private")
        elif key_path is not None:
            made_here.append((("walkin", "signing_key_file"), key_path))
    pin = raw.get("pin") if isinstance(raw.get("pin"), dict) else None
    if pin is not None:  # P34: the pepper keys every PIN hash of the site: a short one could be guessed
        want(("pin", "pepper_file"), pin.get("pepper_file"), "secret", min_len=16)
    if db is not None:
        made_here.append((("storage", "path"), db))

    plain = [w for w in wanted if w.credential is None]
    checks = [(str(w.path), "r") for w in plain]
    writes = [(str(p if p.exists() else _existing_parent(p)), "w") for _, p in made_here]
    answers = probe(user, checks + writes)
    who = "" if user.is_me else f" as user {user.name}"
    read = [(w, err, who) for w, err in zip(plain, answers[:len(checks)])]
    for w in wanted:
        if w.credential is None:
            continue
        # systemd reads it as root when the service starts, never the service user: from a shell, whoever
        # runs the check reads it (root, as systemd); under the service (the daemon's start), it was not handed
        if under_service():
            err = (f"not handed over by systemd as the credential {w.credential} (put it in {w.path.parent} "
                   "as a regular file, not a link, and restart)")
        else:
            err = probe(current_user(), [(str(w.path), "r")])[0]
        read.append((w, err, ""))
    for w, err, reader in read:
        if err is not None:
            out.append(Problem(w.loc, f"cannot read {w.path}{reader}: {err}{_owner(w.path)}", w.fatal))
            continue
        try:
            data = w.path.read_bytes()
        except OSError as e:  # readable by the user, not by us: nothing more to say about its content
            out.append(Problem(w.loc, f"cannot read {w.path}: {e.strerror}", w.fatal))
            continue
        for msg, fatal in _content(w, data):
            out.append(Problem(w.loc, msg, w.fatal and fatal))
    for (loc, p), err in zip(made_here, answers[len(checks):]):
        if err is not None:
            target = p if p.exists() else _existing_parent(p)
            what = "" if target == p else f" (to make {p.name} there)"
            out.append(Problem(loc, f"cannot write {target}{what}{who}: {err}{_owner(target)}"))
    for cert, key in pairs:
        if cert and key and cert.ok and key.ok and not _same_key(cert.value, key.value):
            out.append(Problem(cert.loc, f"the certificate in {cert.path} does not match the private key in "
                                         f"{key.path}", cert.fatal))
    return out


def _content(w: _Wanted, data: bytes) -> list[tuple[str, bool]]:
    """What is wrong with what the file holds; (message, stops the start)."""
    out = []
    if w.kind in SECRET_KINDS:
        mode = w.path.stat().st_mode
        if mode & stat.S_IROTH:
            out.append((f"{w.path} is readable by every user (mode {stat.S_IMODE(mode):04o}): "
                        f"chmod o-r it, or hand it over with LoadCredential=", False))
    if w.kind in ("secret", "scbk"):
        value = data.strip()
        if not value:
            return out + [(f"{w.path} is empty", True)]
        if len(value) < w.min_len:
            return out + [(f"{w.path} holds {len(value)} bytes: the secret needs at least {w.min_len}", True)]
        if w.kind == "scbk":
            try:
                n = len(bytes.fromhex(value.decode("ascii")))
            except (ValueError, UnicodeDecodeError):
                return out + [(f"{w.path} is not hex: the OSDP secure channel key is 16 bytes as 32 hex digits", True)]
            if n != 16:
                return out + [(f"{w.path} holds {n} bytes, not 16 (the OSDP secure channel key)", True)]
    elif w.kind == "ed25519_public":
        err = _ed25519_public(data)
        if err:
            return out + [(f"{w.path}: {err}", True)]
    elif w.kind in ("private_key", "ed25519_private"):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        try:
            w.value = load_pem_private_key(data, password=None)
        except TypeError:
            return out + [(f"{w.path} is encrypted: the daemon cannot ask for its password", True)]
        except Exception:  # the backend's errors vary by key type; what the installer needs is the same
            return out + [(f"{w.path} is not a PEM private key", True)]
        if w.kind == "ed25519_private" and not isinstance(w.value, Ed25519PrivateKey):
            return out + [(f"{w.path} holds a key of type {_key_type(w.value)}, not Ed25519", True)]
    elif w.kind in ("cert", "ca"):
        from cryptography import x509
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            return out + [(f"{w.path} is not a PEM certificate", True)]
        w.value = certs[0]
        if certs[0].not_valid_after_utc.timestamp() < time.time():
            out.append((f"{w.path}: the certificate expired on {certs[0].not_valid_after_utc:%Y-%m-%d}", True))
    w.ok = not any(fatal for _, fatal in out)
    return out


def _ed25519_public(pem: bytes) -> str | None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    try:
        key = load_pem_public_key(pem)
    except ValueError:
        return "not a PEM public key"
    if not isinstance(key, Ed25519PublicKey):
        return f"holds a key of type {_key_type(key)}; passes are signed with Ed25519 (SPEC §3)"
    return None


def _same_key(cert, key) -> bool:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


def _key_type(key) -> str:
    """`EC secp256r1`, `RSA 2048`...: what an installer recognises of the key that was supplied instead."""
    if hasattr(key, "curve"):
        return f"EC {key.curve.name}"
    if hasattr(key, "key_size"):
        return f"{type(key).__name__.removesuffix('PublicKey').removesuffix('PrivateKey')} {key.key_size}"
    return type(key).__name__.removesuffix("PublicKey").removesuffix("PrivateKey")


def _owner(p: Path) -> str:
    """Who may read it, for a file or folder that exists: what the installer will change."""
    try:
        st = p.stat()
    except (OSError, ValueError):
        return ""
    return f" (mode {stat.S_IMODE(st.st_mode):04o}, owner {owner_name(st.st_uid)}:{group_name(st.st_gid)})"


def _existing_parent(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p if p.is_dir() else p.parent


def current_user() -> User:
    """The user this process runs as: the daemon's own view of its files."""
    import pwd
    return User(pwd.getpwuid(os.geteuid()).pw_name, os.geteuid(), os.getegid(), tuple(os.getgroups()))
