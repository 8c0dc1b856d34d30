#!/usr/bin/env bash
# Builds gatekeeper_<version>_<arch>.deb from this checkout with dpkg-deb (usage: build-deb.sh [OUT_DIR],
# default dist/): the application in its own virtual environment under /opt/gatekeeper/venv, made with
# Debian's /usr/bin/python3 and the Python packages from PyPI; /usr/bin/gatekeeper; the systemd unit; the
# commented example config as a conffile in /etc/gatekeeper; maintainer scripts from packaging/debian/.
#
# Plain dpkg-deb rather than dh-virtualenv: dh-virtualenv is not in Debian 12's main archive, and a venv
# staged and packed by one script has fewer moving parts than a debian/ source tree with debhelper.
# Needs no root: ownership in the package is root's (--root-owner-group) and nothing is written outside a
# temporary folder and OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)
# The interpreter of the gate's Debian, never the first python3 on PATH (a pyenv or other build may come
# first): the venv links to it, and the package depends on it.
PY=/usr/bin/python3
PREFIX=/opt/gatekeeper
VERSION=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
ARCH=$(dpkg --print-architecture)
MAINTAINER="${DEBFULLNAME:-$(git config user.name || echo Gatekeeper)} <${DEBEMAIL:-$(git config user.email || echo root@localhost)}>"
DEB="$OUT/gatekeeper_${VERSION}_${ARCH}.deb"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/root
venv=$stage$PREFIX/venv
say() { echo "build-deb: [${SECONDS}s] $*" >&2; }

# The project's sources only (what pyproject.toml packages), so nothing of the checkout's own .venv, build
# or test output ends up in the package and the build never writes into the checkout.
say "sources"
mkdir -p "$work/src"
tar -C "$ROOT" --exclude=__pycache__ -cf - pyproject.toml README.md edge drivers simulators demo | tar -C "$work/src" -xf -

say "virtual environment in $PREFIX/venv ($("$PY" --version))"
"$PY" -m venv "$venv"
# Non-editable, without byte-code: postinst compiles it where it is installed (Debian policy: no .pyc in
# packages); pip and setuptools leave afterwards, so nothing on the gate installs into it.
"$venv/bin/python" -m pip install -q --no-compile --disable-pip-version-check "$work/src"
"$venv/bin/python" -m pip uninstall -q -y pip setuptools
find "$venv" -depth -type d -name __pycache__ -exec rm -rf {} +

# The venv was made at $stage/opt/gatekeeper/venv: scripts' #! lines, activate and pyvenv.cfg name that
# folder. Rewrite them to /opt/gatekeeper/venv and make sure no file still names the staging folder.
{ grep -rlIZ -- "$stage" "$venv" || true; } | xargs -0 -r sed -i "s|$stage||g"
if left=$(grep -rl -- "$stage" "$stage"); then
  say "files still name the staging folder: $left"
  exit 1
fi
# -I: the venv's own packages, never this checkout (the current folder) or a PYTHONPATH
say "smoke test: $("$venv/bin/python" -I -X pycache_prefix="$work/pyc" -m edge.cli --version)"
"$venv/bin/python" -I -X pycache_prefix="$work/pyc" -c 'import edge.daemon, cv2, pyzbar.pyzbar, osdp, uvicorn'

say "files"
install -d "$stage/usr/bin"
ln -s "$PREFIX/venv/bin/gatekeeper" "$stage/usr/bin/gatekeeper"
install -D -m 0644 systemd/gatekeeper.service "$stage/lib/systemd/system/gatekeeper.service"
install -D -m 0644 config/site.example.toml "$stage/etc/gatekeeper/site.example.toml"
# P24: example site calendars (public holidays), named from a site's config; data, not configuration
install -D -m 0644 -t "$stage/usr/share/gatekeeper/calendars" config/calendars/*.toml
# bash completion, made by the packaged command from its own parser, so it always matches it
install -d "$stage/usr/share/bash-completion/completions"
"$venv/bin/python" -I -X pycache_prefix="$work/pyc" -m edge.cli completion bash \
  >"$stage/usr/share/bash-completion/completions/gatekeeper"
doc=$stage/usr/share/doc/gatekeeper
install -D -m 0644 packaging/debian/copyright "$doc/copyright"
gzip -9n <README.md >"$doc/README.md.gz"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain 2>/dev/null | grep -q . && echo " with local changes" || true)
{
  echo "gatekeeper ($VERSION) unstable; urgency=medium"
  echo
  echo "  * Built from commit $commit$dirty by scripts/build-deb.sh."
  echo
  echo " -- $MAINTAINER  $(date -R)"
} | gzip -9n >"$doc/changelog.gz"
install -D -m 0644 packaging/debian/lintian-overrides "$stage/usr/share/lintian/overrides/gatekeeper"
# Wheels are unpacked with the builder's umask; a package's files are root's, readable by all.
chmod -R u+rwX,go+rX,go-w "$stage"
# Shared libraries are loaded, never run: not executable (some wheels ship them 0755).
find "$venv" -type f \( -name '*.so' -o -name '*.so.*' \) -exec chmod 0644 {} +

say "dependencies"
# The Debian libraries the venv's compiled modules link to, as dpkg-shlibdeps finds them (the libraries a
# wheel carries in its own *.libs folder are in the package already). libzbar0 is loaded by pyzbar at run
# time (ctypes), so no ELF names it; adduser makes the user in postinst. The venv is bound to Python 3.11's
# ABI: another python3 would break it, so the package says so.
mapfile -t elfs < <(find "$venv" -type f \( -name '*.so' -o -name '*.so.*' \) -print)
mkdir -p "$work/shlibs/debian"
printf 'Source: gatekeeper\n\nPackage: gatekeeper\nArchitecture: any\n' >"$work/shlibs/debian/control"
mapfile -t private < <(find "$venv" -type d -name '*.libs' -printf '-l%p\n')
# --ignore-missing-info: the wheels' own libraries have no Debian shlibs entry, and need none.
if ! found=$(cd "$work/shlibs" && dpkg-shlibdeps -O --ignore-missing-info "${private[@]}" -e "${elfs[@]}" \
               2>"$work/shlibdeps.log"); then
  cat "$work/shlibdeps.log" >&2
  say "dpkg-shlibdeps failed: a library a wheel needs is not installed here"
  exit 1
fi
shlibs=$(sed -n 's/^shlibs:Depends=//p' <<<"$found")
[ -n "$shlibs" ] || { say "dpkg-shlibdeps found no dependencies"; exit 1; }
pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
pynext=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1] + 1}")')
depends="python3 (>= $pyver), python3 (<< $pynext), libzbar0, adduser, $shlibs"

install -d "$stage/DEBIAN"
for s in postinst prerm postrm; do install -m 0755 "packaging/debian/$s" "$stage/DEBIAN/$s"; done
echo /etc/gatekeeper/site.example.toml >"$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@MAINTAINER@|$MAINTAINER|" -e "s|@SIZE@|$size|" \
    -e "s|@DEPENDS@|$depends|" packaging/debian/control.in >"$stage/DEBIAN/control"

say "packing $(basename "$DEB") ($((size / 1024)) MB installed)"
# gzip: xz takes minutes for the venv's ~300 MB on two cores, gzip seconds, and unpacks faster on a
# controller; zstd would be faster still, but Debian 12's lintian refuses it in a .deb.
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$DEB" >/dev/null
echo "$DEB"
