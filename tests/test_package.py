"""The Debian package, built from this checkout and installed on this machine with dpkg: the installed
command, the example config's --check, the installed unit under systemd-analyze, lintian, the daemon running
as its user, and a remove and purge that leave nothing behind. The machine is reused: whatever happens, the
package is purged at the end, and a gatekeeper installed before the test is never touched."""
from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from demo.procs import Child
from sitekit import ROOT, WAIT_S

pytestmark = [
    pytest.mark.skipif(shutil.which("dpkg") is None, reason="no dpkg: the package installs only on Debian"),
    pytest.mark.skipif(os.geteuid() != 0, reason="installing a package with dpkg -i needs root"),
    # building the venv fetches and unpacks ~300 MB of wheels; lintian reads all of it
    pytest.mark.timeout(1800),
]

ETC = Path("/etc/gatekeeper")
EXAMPLE = ETC / "site.example.toml"
STATE = Path("/var/lib/gatekeeper")
OPT = Path("/opt/gatekeeper")
UNIT = Path("/lib/systemd/system/gatekeeper.service")
# The installed command must run from its own venv, never from this checkout through the test's PYTHONPATH.
CLEAN = ["env", "-u", "PYTHONPATH", "-u", "PYTHONHOME", "-u", "VIRTUAL_ENV", "-u", "CREDENTIALS_DIRECTORY"]


def run(*args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd="/")  # not this checkout
    if check:
        assert r.returncode == 0, f"{args} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


def installed() -> bool:
    r = run("dpkg-query", "-W", "-f=${db:Status-Status}", "gatekeeper")
    return r.returncode == 0 and r.stdout.strip() not in ("", "not-installed")


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def purge() -> None:
    run("dpkg", "--purge", "gatekeeper", timeout=300)


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    """The package, built once for the module (or the one $GATEKEEPER_DEB names)."""
    if installed() or user_exists("gatekeeper") or any(p.exists() for p in (OPT, ETC, STATE)):
        pytest.fail("this machine already has a gatekeeper package, a user gatekeeper, /opt/gatekeeper, "
                    "/etc/gatekeeper or /var/lib/gatekeeper; the test installs and purges its own and leaves "
                    "those alone: remove them first (dpkg --purge gatekeeper)")
    if os.environ.get("GATEKEEPER_DEB"):  # the package about to ship, built before
        return Path(os.environ["GATEKEEPER_DEB"])
    out = tmp_path_factory.mktemp("deb")
    r = run("bash", str(ROOT / "scripts" / "build-deb.sh"), str(out), timeout=1500)
    assert r.returncode == 0, r.stderr[-4000:]
    debs = list(out.glob("gatekeeper_*.deb"))
    assert [d.name for d in debs] == [r.stdout.strip().rsplit("/", 1)[-1]]
    return debs[0]


@pytest.fixture(scope="module")
def package(deb):
    """The package installed with dpkg -i; purged afterwards whatever happens."""
    try:
        run("dpkg", "-i", str(deb), timeout=600, check=True)
        yield deb
    finally:
        purge()
        # what the tests wrote there as a site would (none of it was there before the test)
        shutil.rmtree(ETC, ignore_errors=True)


def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_package_is_named_and_declared_as_debian_expects(deb):
    arch = run("dpkg", "--print-architecture", check=True).stdout.strip()
    assert deb.name == f"gatekeeper_{version()}_{arch}.deb"
    fields = run("dpkg-deb", "-f", str(deb), check=True).stdout
    depends = re.search(r"^Depends: (.*)$", fields, re.M).group(1)
    names = {d.strip().split()[0] for d in depends.split(",")}
    assert {"python3", "libzbar0", "adduser", "libc6"} <= names, depends
    assert re.search(r"^Suggests: .*\bmosquitto\b", fields, re.M)
    assert run("dpkg-deb", "-I", str(deb), "conffiles", check=True).stdout.split() == [str(EXAMPLE)]
    listing = run("dpkg-deb", "-c", str(deb), check=True).stdout
    assert not re.search(r"\.pyc$|__pycache__", listing, re.M), "byte-code is made by postinst, not shipped"
    assert "./usr/bin/gatekeeper -> /opt/gatekeeper/venv/bin/gatekeeper" in listing
    assert "./usr/share/bash-completion/completions/gatekeeper" in listing


def test_the_installed_command_runs_from_its_own_venv_on_debians_python(package):
    r = run(*CLEAN, "gatekeeper", "--version", check=True)
    assert r.stdout.strip() == f"gatekeeper {version()}"
    assert shutil.which("gatekeeper") == "/usr/bin/gatekeeper"
    where = run(*CLEAN, str(OPT / "venv/bin/python"), "-c", "import edge, sys; print(edge.__file__, sys.executable)",
                check=True).stdout.split()
    assert where[0].startswith(str(OPT / "venv/lib/")), "the application is installed in the venv, not editable"
    assert os.path.realpath(OPT / "venv/bin/python") == os.path.realpath("/usr/bin/python3")
    assert "home = /usr/bin" in (OPT / "venv/pyvenv.cfg").read_text()
    assert list(OPT.rglob("__pycache__")), "postinst compiles the sources"
    r = run("dpkg-query", "-W", "-f=${Conffiles}", "gatekeeper", check=True)
    assert str(EXAMPLE) in r.stdout


def test_postinst_made_the_user_and_the_folders(package):
    user = pwd.getpwnam("gatekeeper")
    assert user.pw_uid < 1000 and user.pw_shell in ("/usr/sbin/nologin", "/bin/false"), "a system user"
    assert grp.getgrgid(user.pw_gid).gr_name == "gatekeeper"
    st = STATE.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, 0o750)
    st = (ETC / "credentials").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700), "secrets readable by root (systemd) only"


def test_check_of_the_example_names_exactly_the_files_a_site_must_supply(package):
    """The installed example is valid but for its key and certificate files, which only a site has: --check
    names each of them, one problem a line, and no other file."""
    raw = tomllib.loads(EXAMPLE.read_text())
    named: set[str] = set()

    def files(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k.endswith("_file") and isinstance(v, str):
                    named.add(str(ETC / v))  # relative paths are from the config's folder
                else:
                    files(v)
        elif isinstance(node, list):
            for v in node:
                files(v)
    files(raw)
    assert {str(ETC / "keys/central-1.pub"), str(ETC / "tls/ca.pem"), str(ETC / "credentials/mqtt-password")} <= named

    r = run(*CLEAN, "gatekeeper", "run", "--check", "--config", str(EXAMPLE), timeout=120)
    assert r.returncode != 0, r.stdout
    problems = [ln for ln in r.stderr.splitlines() if ln.strip()]
    mentioned: list[str] = []
    for line in problems:
        paths = {p.rstrip(".") for p in re.findall(r"(?<![\w.-])(/[\w./-]+)", line)} - {str(EXAMPLE)}
        assert len(paths) <= 1, f"one problem a line: {line}"
        mentioned += paths
    assert sorted(mentioned) == sorted(named), r.stderr


def test_the_installed_unit_verifies_and_is_sandboxed(package):
    r = run("systemd-analyze", "verify", str(UNIT), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "gatekeeper" not in r.stderr, r.stderr
    r = run("systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT), timeout=120)
    assert r.returncode == 0, r.stderr
    score = float(re.search(r"Overall exposure level for gatekeeper\.service: ([\d.]+)", r.stdout).group(1))
    assert score <= 2.0, r.stdout


def test_lintian_finds_no_error_and_every_override_gives_its_reason(package):
    r = run("lintian", "--info", "--tag-display-limit", "0", str(package), timeout=1200)
    tags = [ln for ln in r.stdout.splitlines() if re.match(r"^[EWIXPO]: ", ln)]
    assert not [t for t in tags if t.startswith("E:")], "\n".join(tags)
    assert not [t for t in tags if "unused-override" in t or "mismatched-override" in t], "\n".join(tags)
    overrides = Path("/usr/share/lintian/overrides/gatekeeper").read_text().splitlines()
    for i, line in enumerate(overrides):
        if line.startswith("gatekeeper:"):
            j = i - 1
            while j >= 0 and overrides[j].startswith("gatekeeper:"):
                j -= 1
            assert j >= 0 and overrides[j].startswith("# "), f"no reason for: {line}"


def test_the_installed_daemon_runs_as_its_user_and_keeps_its_state_in_var_lib(package):
    config = ETC / "test-package.toml"
    config.write_text(f"""
[site]
id = "test"
gate = "package"

[areas]
tree = ["site"]

[storage]
path = "{STATE / 'gatekeeper.db'}"

[[io_modules]]
name = "io1"
host = "127.0.0.1"
port = 1
timeout_s = 0.5

[[doors]]
name = "main"
area = "site"
io = "io1"
lock_coil = 0

[api]
port = 0
""")
    config.chmod(0o644)
    daemon = Child("installed daemon", [*CLEAN, "setpriv", "--reuid=gatekeeper", "--regid=gatekeeper", "--init-groups",
                                        "gatekeeper", "run", "--config", str(config)], cwd=str(STATE))
    try:
        # the I/O module is not there: a named fault, retried, and the daemon ready all the same
        daemon.wait_for("gatekeeper ready", timeout=WAIT_S)
        assert daemon.stop() == 0, "\n".join(daemon.output[-20:])
    finally:
        daemon.kill()
        config.unlink()
    db = STATE / "gatekeeper.db"
    assert db.stat().st_uid == pwd.getpwnam("gatekeeper").pw_uid
    r = run(*CLEAN, "gatekeeper", "events", "--config", str(EXAMPLE), "--verify", timeout=120)
    assert r.returncode == 0, r.stderr


def test_reinstalling_keeps_the_state_the_user_and_the_sites_files(package):
    db = STATE / "gatekeeper.db"
    assert db.exists(), "the daemon's test left a database"
    before = (db.read_bytes(), pwd.getpwnam("gatekeeper").pw_uid)
    secret = ETC / "credentials" / "mqtt-password"
    secret.write_text("not-a-real-password\n")
    run("dpkg", "-i", str(package), timeout=600, check=True)  # as an upgrade: prerm upgrade, postinst configure
    assert (db.read_bytes(), pwd.getpwnam("gatekeeper").pw_uid) == before
    assert secret.read_text() == "not-a-real-password\n"
    assert stat.S_IMODE((ETC / "credentials").stat().st_mode) == 0o700
    assert list(OPT.rglob("__pycache__")), "compiled again"
    r = run(*CLEAN, "gatekeeper", "--version", check=True)
    assert r.stdout.strip() == f"gatekeeper {version()}"


def test_remove_keeps_the_state_and_purge_leaves_only_the_sites_own_files(package):
    assert (STATE / "gatekeeper.db").exists(), "the daemon's test left a database to purge"
    secret = ETC / "credentials" / "mqtt-password"
    assert secret.exists(), "the site's secret from the reinstall test"
    run("dpkg", "--remove", "gatekeeper", check=True)
    assert not OPT.exists() and not Path("/usr/bin/gatekeeper").exists() and not UNIT.exists()
    assert STATE.exists() and user_exists("gatekeeper"), "remove keeps the state and the user"
    assert EXAMPLE.exists(), "remove keeps the conffile"
    run("dpkg", "--purge", "gatekeeper", check=True)
    assert not installed()
    assert not STATE.exists() and not user_exists("gatekeeper")
    try:
        grp.getgrnam("gatekeeper")
        raise AssertionError("the group gatekeeper is still there")
    except KeyError:
        pass
    assert not EXAMPLE.exists(), "purge removes the conffile"
    left = [p for d in (Path("/etc/systemd"), Path("/var/lib/systemd")) for p in d.rglob("*gatekeeper*")]
    assert not left, f"deb-systemd-helper's links and state are gone: {left}"
    assert secret.exists(), "a file the site put there is the site's: purge keeps it"
    secret.unlink()
    purge()  # again: nothing to do, and nothing it fails on
    assert not installed()
