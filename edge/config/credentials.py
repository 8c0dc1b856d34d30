"""Secrets as systemd credentials: a secret named `credentials/NAME` in the config is the credential the unit
hands over for the file /etc/gatekeeper/credentials/NAME.

The unit loads that folder whole (`LoadCredential=credentials:/etc/gatekeeper/credentials`), and systemd
names each file in it `credentials_<its path in the folder, / as _>`. So `password_file =
"credentials/mqtt-password"` is, under the service ($CREDENTIALS_DIRECTORY set), the credential
`credentials_mqtt-password`, and from a shell the file `credentials/mqtt-password` beside the config, which
systemd (root) reads and the service user never does. The name is given once, in the config; a secret the
site does not use has no file, and nothing else names it. Any other path is a plain file, as before.

The secrets: readers' scbk_file, mqtt.password_file and key_file, api.tls_key_file, walkin.id_secret_file, pin.pepper_file (P34).
Certificates and public keys are no secrets: they stay plain files, read by the service user.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from edge.config.sections import GateConfig

FOLDER = "credentials"  # beside the config; the unit's LoadCredential= loads it under the same id


def credential_id(path: str) -> str | None:
    """The credential systemd makes of the secret at `path` (`credentials/NAME`), or None for a plain file."""
    parts = PurePosixPath(path).parts
    if len(parts) < 2 or parts[0] != FOLDER or ".." in parts:
        return None
    return "_".join(parts)


def handed_over(path: str, environ=None) -> Path | None:
    """The credential the running service was handed for `path`, if it runs under systemd and has it."""
    name = credential_id(path)
    folder = (os.environ if environ is None else environ).get("CREDENTIALS_DIRECTORY")
    if name is None or not folder:
        return None
    found = Path(folder) / name
    return found if found.is_file() else None


def under_service(environ=None) -> bool:
    return bool((os.environ if environ is None else environ).get("CREDENTIALS_DIRECTORY"))


def with_credentials(cfg: GateConfig) -> GateConfig:
    """The config with each `credentials/NAME` secret replaced by the credential the service was handed.

    One it was not handed keeps its name, so the check names the file the site must supply."""
    if not under_service():
        return cfg

    def cred(p: str | None) -> str | None:
        found = handed_over(p) if p else None
        return str(found) if found else p

    update: dict = {}
    if any(r.scbk_file for r in cfg.readers):
        update["readers"] = [r.model_copy(update={"scbk_file": cred(r.scbk_file)}) for r in cfg.readers]
    if cfg.mqtt is not None:
        update["mqtt"] = cfg.mqtt.model_copy(update={"password_file": cred(cfg.mqtt.password_file),
                                                     "key_file": cred(cfg.mqtt.key_file)})
    if cfg.api is not None:
        update["api"] = cfg.api.model_copy(update={"tls_key_file": cred(cfg.api.tls_key_file)})
    if cfg.walkin is not None:
        update["walkin"] = cfg.walkin.model_copy(update={"id_secret_file": cred(cfg.walkin.id_secret_file)})
    if cfg.pin is not None:  # P34
        update["pin"] = cfg.pin.model_copy(update={"pepper_file": cred(cfg.pin.pepper_file)})
    return cfg.model_copy(update=update)
