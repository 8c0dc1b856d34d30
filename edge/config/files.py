"""Reading the site configuration: parse and validate one TOML file, name each problem with its line, and
check the files it names."""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from pydantic import ValidationError

from edge.config.sections import ConfigError, GateConfig


def load_config(path: str | os.PathLike) -> tuple[GateConfig, Path]:
    """Parse and validate; returns the config and its folder (for relative paths). Raises ConfigError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{p}: cannot read: {e.strerror or e}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{p}: not valid TOML: {e}"]) from None
    try:
        cfg = GateConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError([_describe(p, text, err) for err in e.errors()]) from None
    return cfg, p.resolve().parent


def _describe(path: Path, text: str, err: dict) -> str:
    loc = [str(x) for x in err.get("loc", ())]
    key = ".".join(loc) if loc else "(top level)"
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        msg = "unknown key (a typo?)"
    elif err.get("type") == "missing":
        msg = "required key is missing"
    line = _line_of(text, err.get("loc", ()))
    where = f"{path}:{line}" if line else f"{path}"
    return f"{where}: {key}: {msg}"


def _line_of(text: str, loc: tuple) -> int | None:
    """Best-effort line of a key: the n-th [[table]] or [table] header, then the key below it."""
    lines = text.splitlines()
    start = 0
    names = [x for x in loc if isinstance(x, str)]
    if not names:
        return None
    table, rest = names[0], loc[1:]
    index = rest[0] if rest and isinstance(rest[0], int) else None
    header = re.compile(r"^\s*\[\[?\s*" + re.escape(table) + r"(\.[^\]]*)?\s*\]\]?\s*$")
    hits = [i for i, ln in enumerate(lines) if header.match(ln)]
    if hits:
        start = hits[index] if index is not None and index < len(hits) else hits[0]
    leaf = names[-1]
    keyline = re.compile(r"^\s*" + re.escape(leaf) + r"\s*=")
    for i in range(start, len(lines)):
        if i > start and lines[i].lstrip().startswith("[") and keyline is not None and len(names) > 1:
            break
        if keyline.match(lines[i]):
            return i + 1
    return start + 1 if hits else None


def resolve(base: Path, p: str) -> Path:
    """A path from the config, relative to the config file's folder."""
    q = Path(p)
    return q if q.is_absolute() else base / q


def check_files(cfg: GateConfig, base: Path, source: str = "config", parts_fatal: bool = True) -> list[str]:
    """Every file the config names exists, is readable and holds what it should; ConfigError listing each
    problem otherwise (so `--check` says them all at once, before the daemon starts). With `parts_fatal`
    false (the daemon starting), the files of the central link and the API are only returned: those parts
    then fault and retry while the doors work, rather than the gate not starting at all."""
    problems = []
    part_problems = []

    def readable(key: str, name: str | None) -> Path | None:
        if name is None:
            return None
        path = resolve(base, name)
        where, _, leaf = key.rpartition(".")
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            problems.append(f"{source}: {where}: cannot read {leaf} {path}: {e.strerror or e}")
            return None
        return path

    for i, r in enumerate(cfg.readers):
        if r.type == "osdp":
            path = readable(f"readers[{i}] ({r.name}).scbk_file", r.scbk_file)
            if path is not None:
                try:
                    key = bytes.fromhex(path.read_text().strip())
                    if len(key) != 16:
                        problems.append(f"{source}: readers[{i}] ({r.name}): scbk_file holds {len(key)} bytes, not 16")
                except ValueError:
                    problems.append(f"{source}: readers[{i}] ({r.name}): scbk_file is not hex")
    for i, k in enumerate(cfg.keys):
        readable(f"keys[{i}] ({k.kid}).public_key_file", k.public_key_file)
    fatal = problems
    problems = part_problems
    if cfg.mqtt is not None:
        for key in ("password_file", "ca_file", "cert_file", "key_file"):
            readable(f"mqtt.{key}", getattr(cfg.mqtt, key))
    if cfg.api is not None and cfg.api.tls_cert_file:
        cert = readable("api.tls_cert_file", cfg.api.tls_cert_file)
        key = readable("api.tls_key_file", cfg.api.tls_key_file)
        if cert is not None and key is not None:
            import ssl
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
            except (ssl.SSLError, ValueError) as e:
                problems.append(f"{source}: api.tls_cert_file/tls_key_file: not a certificate and its key: {e}")
    problems = fatal
    if cfg.walkin is not None:
        path = readable("walkin.id_secret_file", cfg.walkin.id_secret_file)
        if path is not None and len(path.read_bytes().strip()) < 16:
            problems.append(f"{source}: walkin.id_secret_file: the site secret needs at least 16 bytes")
        if cfg.walkin.signing_key_file:
            key_path = resolve(base, cfg.walkin.signing_key_file)
            if key_path.exists():
                readable("walkin.signing_key_file", cfg.walkin.signing_key_file)
            elif not os.access(_existing_parent(key_path), os.W_OK):
                problems.append(f"{source}: walkin.signing_key_file: {key_path} does not exist and cannot be made there")
        kid = cfg.walkin.kid or f"{cfg.site.gate}-w"[:16]
        if kid in {k.kid for k in cfg.keys}:
            problems.append(f"{source}: walkin.kid: {kid!r} is also the kid of a key in [[keys]]")
    db = resolve(base, cfg.storage.path)
    if not os.access(_existing_parent(db), os.W_OK) or (db.exists() and not os.access(db, os.R_OK | os.W_OK)):
        problems.append(f"{source}: storage.path: {db} cannot be read and written by this user")
    if parts_fatal:
        problems += part_problems
    if problems:
        raise ConfigError(problems)
    return part_problems


def _existing_parent(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p if p.is_dir() else p.parent
