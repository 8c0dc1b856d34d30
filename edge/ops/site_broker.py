"""`gatekeeper site-broker`: the site's mosquitto, bridged to the central broker, with its ACL (SPEC §7).

    gatekeeper site-broker --site s1 --gate g1 --gate g2 --central central.example:8883 \\
        --tls-ca ca.pem --out /etc/mosquitto/site

writes, from the templates in edge/ops/mosquitto/:

    OUT/mosquitto.conf        the site broker (listener, persistence, include_dir OUT/conf.d)
    OUT/conf.d/access.conf    no anonymous clients, the password file and the ACL
    OUT/conf.d/bridge.conf    the bridge to the central broker (holds the bridge's password: mode 0600)
    OUT/acl, OUT/passwd       one identity per gate (username = gate id) and the central identity
    OUT/central/acl, OUT/central/passwd   what the central broker needs for this site's bridge and central

Passwords are read from SECRETS/<identity>.password (default OUT/secrets), one a file, and a missing one is
made there (random, mode 0600): give each gate its own as `[mqtt] password_file`. No password is taken
from the command line or printed.
"""
from __future__ import annotations

import base64
import hashlib
import os
import pwd
import re
import secrets
from importlib import resources
from pathlib import Path
from string import Template

from edge.errors import GatekeeperError
# SPEC §2: the peer events a gate reads; never alarm.duress, which only the central identity reads (P34)
from edge.link.messages import PEER_EVENT_TYPES

# A name becomes a topic level, an ACL username and a password-file key: no wildcards, separators or spaces.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# mosquitto 2.0's own password format ($7$: PBKDF2-SHA512), as mosquitto_passwd writes it
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12


def add_command(sub) -> None:
    p = sub.add_parser("site-broker", help="render the site broker's mosquitto config: bridge to central, ACL, "
                       "passwords (SPEC §7)", description=__doc__.split("\n\n")[0])
    p.add_argument("--site", required=True, help="the site id (SPEC §2 `{site}`)")
    p.add_argument("--gate", action="append", required=True, metavar="GATE",
                   help="a gate of the site; one identity each (repeat for every gate)")
    p.add_argument("--central", required=True, metavar="HOST:PORT", help="the central broker")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (made if missing)")
    p.add_argument("--install-dir", metavar="DIR",
                   help="where the files will live on the site server, as the config names them (default: --out)")
    p.add_argument("--secrets", metavar="DIR", help="<identity>.password files (default: OUT/secrets); "
                   "missing ones are made")
    p.add_argument("--root", default="acs", help="topic root (SPEC §2)")
    p.add_argument("--listen", default="0.0.0.0:1883", metavar="ADDR:PORT", help="where the gates connect")
    p.add_argument("--data-dir", default="/var/lib/mosquitto", help="the broker's persistence folder")
    p.add_argument("--central-user", default="central", help="the central system's identity")
    p.add_argument("--bridge-user", help="the bridge's identity and client id on the central broker "
                   "(default: bridge-SITE)")
    p.add_argument("--broker-user", help="the user mosquitto runs as, who must read the password files and the "
                   "ACL (it reads them after dropping root; default: mosquitto when run as root and it exists)")
    p.add_argument("--keepalive-s", type=int, default=30, help="the bridge's keepalive, seconds (≥ 5)")
    p.add_argument("--retry-s", type=int, nargs=2, default=(2, 30), metavar=("BASE", "CAP"),
                   help="the bridge's reconnect backoff, seconds")
    p.add_argument("--tls-ca", metavar="FILE", help="CA of the central broker's certificate: the bridge uses TLS")
    p.add_argument("--cert", metavar="FILE", help="the bridge's client certificate (mutual TLS)")
    p.add_argument("--key", metavar="FILE", help="its private key")
    p.set_defaults(func=cmd_site_broker)


def cmd_site_broker(args) -> int:
    out = Path(args.out).resolve()
    written = render(
        site=args.site, gates=args.gate, central=args.central, out=out,
        install_dir=Path(args.install_dir) if args.install_dir else out,
        secrets_dir=Path(args.secrets).resolve() if args.secrets else out / "secrets",
        root=args.root, listen=args.listen, data_dir=args.data_dir, central_user=args.central_user,
        bridge_user=args.bridge_user or f"bridge-{args.site}", keepalive_s=args.keepalive_s, retry_s=args.retry_s,
        tls_ca=args.tls_ca, cert=args.cert, key=args.key, broker_user=_broker_user(args.broker_user))
    for path, what in written:
        print(f"{path}: {what}")
    return 0


def render(*, site: str, gates: list[str], central: str, out: Path, install_dir: Path, secrets_dir: Path,
           root: str = "acs", listen: str = "0.0.0.0:1883", data_dir: str = "/var/lib/mosquitto",
           central_user: str = "central", bridge_user: str | None = None, keepalive_s: int = 30,
           retry_s=(2, 30), tls_ca: str | None = None, cert: str | None = None,
           key: str | None = None, broker_user: pwd.struct_passwd | None = None) -> list[tuple[Path, str]]:
    """Write every file; returns (path, what it is) for each, passwords never among them. The files mosquitto
    reads after dropping root (password files, ACL) are given to `broker_user`."""
    bridge_user = bridge_user or f"bridge-{site}"
    _check(site, gates, central, root, listen, central_user, bridge_user, keepalive_s, retry_s, cert, key)
    base = f"{root}/{site}"
    address, _, port = listen.rpartition(":")
    made: list[tuple[Path, str]] = []
    passwords = {name: _password(secrets_dir, name, made)
                 for name in [*gates, central_user, bridge_user]}
    inst = install_dir
    common = {"site": site, "base": base, "central_user": central_user, "bridge_user": bridge_user}

    files: dict[Path, tuple[str, int, str]] = {}  # path -> (text, mode, what); bridge.conf is read as root
    files[out / "mosquitto.conf"] = (_template("site-broker.conf.in").substitute(
        common, listen_address=address, listen_port=port, persistence_dir=data_dir.rstrip("/"), out=inst),
        0o644, "the site broker's config")
    files[out / "conf.d" / "access.conf"] = (_template("access.conf.in").substitute(common, out=inst), 0o644,
                                             "no anonymous clients; passwords and ACL")
    # mosquitto takes the bridge's password only in its config: this file is readable by root alone
    files[out / "conf.d" / "bridge.conf"] = (bridge_conf(
        site=site, central=central, root=root, bridge_user=bridge_user, password=passwords[bridge_user],
        keepalive_s=keepalive_s, retry_s=retry_s, tls_ca=tls_ca, cert=cert, key=key),
        0o600, f"the bridge to {central} (holds its password: 0600)")
    peer_events = "\n".join(f"topic read {base}/+/events/{t}" for t in PEER_EVENT_TYPES)
    gate_blocks = "".join(_template("gate.acl.in").substitute(common, gate=g, peer_events=peer_events)
                          for g in gates)
    files[out / "acl"] = (_template("site.acl.in").substitute(common, gate_blocks=gate_blocks), 0o644,
                          f"the ACL: {len(gates)} gate(s) and {central_user}")
    files[out / "passwd"] = ("".join(f"{n}:{hash_password(passwords[n])}\n" for n in [*gates, central_user]),
                             0o600, "the site broker's password file")
    files[out / "central" / "acl"] = (_template("central.acl.in").substitute(common).lstrip("\n"), 0o644,
                                      f"for the central broker's ACL: {bridge_user} and {central_user}")
    files[out / "central" / "passwd"] = ("".join(f"{n}:{hash_password(passwords[n])}\n"
                                                 for n in (bridge_user, central_user)),
                                         0o600, "for the central broker's password file")
    broker_reads = {out / "acl", out / "passwd", out / "central" / "acl", out / "central" / "passwd"}
    for path, (text, mode, what) in files.items():
        _write(path, text, mode, broker_user if path in broker_reads else None)
        made.append((path, what))
    return made


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A password-file hash mosquitto 2.0 accepts ($7$: PBKDF2-SHA512, as `mosquitto_passwd` makes it)."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    dk = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, PBKDF2_ITERATIONS, 64)
    return f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def _check(site, gates, central, root, listen, central_user, bridge_user, keepalive_s, retry_s, cert, key) -> None:
    for what, name in [("--site", site), ("--root", root), ("--central-user", central_user),
                       ("--bridge-user", bridge_user), *[("--gate", g) for g in gates]]:
        if not NAME.match(name):
            raise GatekeeperError(f"{what} {name!r}: use letters, digits, '.', '_' or '-' (up to 64), "
                                  "no '/', '+', '#', ':' or spaces")
    names = [*gates, central_user, bridge_user]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise GatekeeperError(f"one identity per gate: {', '.join(dup)} named twice (gates, --central-user, "
                              "--bridge-user must all differ)")
    for what, hostport in (("--central", central), ("--listen", listen)):
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or " " in host:
            raise GatekeeperError(f"{what} {hostport!r} is not HOST:PORT")
    if keepalive_s < 5:
        raise GatekeeperError("--keepalive-s: mosquitto takes 5 s at least")
    if not 1 <= retry_s[0] <= retry_s[1]:
        raise GatekeeperError("--retry-s BASE CAP: 1 ≤ BASE ≤ CAP")
    if bool(cert) != bool(key):
        raise GatekeeperError("--cert and --key go together")


def _tls_lines(ca: str | None, cert: str | None, key: str | None) -> str:
    if not ca:
        return ("#bridge_cafile /etc/mosquitto/ca_certificates/central-ca.pem\n"
                "#bridge_certfile /etc/mosquitto/certs/bridge.pem\n#bridge_keyfile /etc/mosquitto/certs/bridge.key\n"
                "#bridge_tls_version tlsv1.2")
    lines = [f"bridge_cafile {Path(ca).resolve()}", "bridge_tls_version tlsv1.2", "bridge_insecure false"]
    if cert:
        lines += [f"bridge_certfile {Path(cert).resolve()}", f"bridge_keyfile {Path(key).resolve()}"]
    return "\n".join(lines)


def _password(secrets_dir: Path, name: str, made: list) -> str:
    path = secrets_dir / f"{name}.password"
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = secrets.token_urlsafe(24)
        _write(path, text + "\n", 0o600)
        made.append((path, f"a new password for {name}"))
        return text
    except OSError as e:
        raise GatekeeperError(f"cannot read {path}: {e.strerror}") from None
    if not text or any(c.isspace() for c in text):
        # the bridge's password is a word of mosquitto's config line; the gates read theirs the same way
        raise GatekeeperError(f"{path}: one word (no spaces or line breaks), not empty")
    return text


def bridge_conf(*, site: str, central: str, root: str = "acs", bridge_user: str | None = None,
                password: str | None = None, keepalive_s: int = 30, retry_s=(2, 30), tls_ca: str | None = None,
                cert: str | None = None, key: str | None = None) -> str:
    """The bridge section of a site broker's config (SPEC §7); without a password the bridge connects
    anonymously (a central broker for tests)."""
    bridge_user = bridge_user or f"bridge-{site}"
    credentials = (f"remote_username {bridge_user}\nremote_password {password}" if password is not None
                   else "# no credentials: the central broker takes anonymous clients")
    return _template("bridge.conf.in").substitute(
        site=site, base=f"{root}/{site}", bridge_user=bridge_user, central=central, keepalive_s=keepalive_s,
        retry_base_s=retry_s[0], retry_cap_s=retry_s[1], credentials=credentials,
        tls_note="on" if tls_ca else "off; give --tls-ca (and --cert/--key for mutual TLS) to turn it on",
        tls=_tls_lines(tls_ca, cert, key))


def _template(name: str) -> Template:
    return Template(resources.files("edge.ops").joinpath("mosquitto", name).read_text(encoding="utf-8"))


def _broker_user(name: str | None) -> pwd.struct_passwd | None:
    """The user mosquitto runs as: named, or `mosquitto` when we are root and it exists; None: leave owners be."""
    if name is None:
        if os.geteuid() != 0:
            return None
        name = "mosquitto"
        try:
            return pwd.getpwnam(name)
        except KeyError:
            return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise GatekeeperError(f"--broker-user {name}: no such user") from None


def _write(path: Path, text: str, mode: int, owner: pwd.struct_passwd | None = None) -> None:
    """Written whole (a temporary file renamed), with its mode and owner from the start: a secret is never
    readable by anyone else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, owner.pw_uid, owner.pw_gid)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
