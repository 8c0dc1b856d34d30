#!/usr/bin/env bash
# Sets up everything Gatekeeper needs on a Debian machine (run as root for the apt step):
# system packages, a virtual environment in .venv, and the Python packages of pyproject.toml.
# Idempotent and quick when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# mosquitto: the MQTT broker the tests and the demo start themselves (no service is enabled)
# libzbar0: QR decoding from camera frames (pyzbar)
# chromium: the browser the console's tests drive (Playwright launches it by its path; no browser download)
# fonts-wqy-microhei: Chinese glyphs, so the zh-CN console renders in that browser and its screenshots
# dpkg-dev (dpkg-shlibdeps), lintian: scripts/build-deb.sh and the package's test; adduser: the package's postinst
# systemd (systemd-analyze), libseccomp2: the tests run the daemon under the unit's system-call filter
APT_PACKAGES=(python3 python3-venv python3-dev gcc mosquitto mosquitto-clients libzbar0 chromium fonts-wqy-microhei
              dpkg-dev lintian adduser systemd libseccomp2)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Reinstall only when the project's requirements changed.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
