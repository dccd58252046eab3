"""Build the Python environment that analysts' sandboxes run in.

The sandboxed Jupyter server runs as an unprivileged analyst user, so its
Python must be readable by everyone: a venv made from the system interpreter
(``/usr/bin/python3.11``) under a world-readable prefix, never the hub's own
interpreter (which may live under root's home).  It holds JupyterLab, the
single-user server, a kernel, the usual analysis libraries and the ``sandbox``
client package from this repository, and nothing of the gateway: no OpenDP,
no raw-data tooling.

Usage::

    python -m sandbox.hub.build_env [--prefix /opt/dpsandbox/sandbox-env] [--force]

The build is idempotent: a stamp file in the prefix records a hash of every
input (interpreter, lock file, package list, client sources), so a second run
with nothing changed returns in well under a second.  Only the client package
is re-copied when only its sources changed.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["DEFAULT_PREFIX", "SANDBOX_PACKAGES", "build_sandbox_env", "default_prefix", "main"]

DEFAULT_PREFIX = Path("/opt/dpsandbox/sandbox-env")
# Debian's own interpreter (world-readable); 3.11 on Debian 12, whatever python3 is elsewhere.
DEFAULT_PYTHON = next(
    (p for p in (Path("/usr/bin/python3.11"), Path("/usr/bin/python3")) if p.exists()),
    Path("/usr/bin/python3"),
)
REPO_ROOT = Path(__file__).resolve().parents[2]
# Third-party packages of the sandbox; versions come from requirements.lock.
SANDBOX_PACKAGES = (
    "jupyterlab",
    "jupyterhub",
    "ipykernel",
    "pandas",
    "matplotlib",
    "httpx",
    "rich",
)
# Pins of requirements.lock that the sandbox interpreter cannot install: the lock
# is made with a newer 3.11 than Debian's 3.11.2 (soupsieve 4.1.3 needs >= 3.11.5).
# pip picks the newest compatible release of these instead.
UNPINNED = frozenset({"soupsieve"})
# JupyterLab in an offline sandbox: no "Jupyter news" question, no update check, and the
# server makes no request to the news feed (written into the environment on every build).
LAB_SETTINGS_OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                     "checkForUpdates": False},
}
SERVER_CONFIG = {
    "LabApp": {"news_url": None,
               "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate"},
    # jupyter_server pings kernel websockets every 30 s with a 90 s timeout, which tornado
    # >= 6.5 shortens with a warning at the first kernel connection: say 30 s outright.
    "ServerApp": {"tornado_settings": {"ws_ping_timeout": 30000}},
}
# Bump when the build procedure itself changes in a way that needs a rebuild.
BUILD_VERSION = "2"
STAMP_NAME = ".dpsandbox-stamp.json"


def default_prefix() -> Path:
    """Where the sandbox environment lives: ``DPSANDBOX_SANDBOX_ENV`` or the default."""
    return Path(os.environ.get("DPSANDBOX_SANDBOX_ENV") or DEFAULT_PREFIX)


def _log(message: str) -> None:
    print(f"[build-sandbox-env] {message}", file=sys.stderr, flush=True)


def inputs_digest(*parts: bytes) -> str:
    """A SHA-256 over the digests of ``parts``: the identity of a build's inputs."""
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _client_sources(repo: Path) -> list[Path]:
    """The files that make up the ``sandbox`` package inside a sandbox (no hub code)."""
    files = []
    for name in ("__init__.py", "server.py"):  # server.py: the Jupyter server's side
        if (repo / "sandbox" / name).is_file():
            files.append(repo / "sandbox" / name)
    client = repo / "sandbox" / "client"
    if client.is_dir():
        files.extend(
            p
            for p in sorted(client.rglob("*"))
            # .mo: the client's own message catalog (sandbox/client/locale), compiled by Babel
            if p.is_file() and "__pycache__" not in p.parts and p.suffix in {".py", ".typed", ".mo"}
        )
    return files


def _deps_hash(python: Path, lock: Path, packages: tuple[str, ...]) -> str:
    version = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return inputs_digest(
        BUILD_VERSION.encode(),
        str(python).encode(),
        version.encode(),
        lock.read_bytes(),
        "\n".join(packages).encode(),
    )


def _client_hash(repo: Path) -> str:
    parts = [json.dumps([LAB_SETTINGS_OVERRIDES, SERVER_CONFIG], sort_keys=True).encode()]
    for path in _client_sources(repo):
        parts.append(str(path.relative_to(repo)).encode())
        parts.append(path.read_bytes())
    return inputs_digest(BUILD_VERSION.encode(), *parts)


def _read_stamp(prefix: Path) -> dict[str, str]:
    try:
        stamp = json.loads((prefix / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _write_stamp(prefix: Path, stamp: dict[str, str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=prefix, prefix=".stamp-")
    with os.fdopen(fd, "w") as f:
        json.dump(stamp, f, indent=2, sort_keys=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, prefix / STAMP_NAME)


@contextmanager
def _build_lock(prefix: Path) -> Iterator[None]:
    """Serialise concurrent builds of the same prefix (make and a test run, say)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    lock_path = prefix.parent / f".{prefix.name}.lock"
    with open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _site_packages(prefix: Path) -> Path:
    out = subprocess.run(
        [
            str(prefix / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return Path(out)


def _sandbox_constraints(lock: Path) -> str:
    """The lock's pins, less those the sandbox interpreter cannot install."""
    kept = []
    for line in lock.read_text().splitlines():
        name = line.split("==", 1)[0].strip().lower().replace("_", "-")
        if name and name not in UNPINNED:
            kept.append(line)
    return "\n".join(kept) + "\n"


def _install_dependencies(prefix: Path, python: Path, lock: Path, packages: tuple[str, ...]) -> None:
    _log(f"creating venv {prefix} from {python}")
    subprocess.run([str(python), "-m", "venv", "--clear", str(prefix)], check=True)
    pip = [str(prefix / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _log(f"installing {', '.join(packages)} (constrained by {lock.name})")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="sandbox-constraints-") as c:
        c.write(_sandbox_constraints(lock))
        c.flush()
        subprocess.run([*pip, "install", "--quiet", "-c", c.name, *packages], check=True)


def _install_client(prefix: Path, repo: Path) -> None:
    """Copy the ``sandbox`` client package (not the hub, not the gateway) into the venv."""
    target = _site_packages(prefix) / "sandbox"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    sources = _client_sources(repo)
    for path in sources:
        dest = target / path.relative_to(repo / "sandbox")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    if not (target / "__init__.py").exists():
        # The repository's package file is not written yet: keep `import sandbox` working.
        (target / "__init__.py").write_text(
            '"""dp-sandbox client (installed into the sandbox environment)."""\n'
        )
    _log(f"installed the sandbox client package ({len(sources)} files) into {target}")


def _write_lab_settings(prefix: Path) -> None:
    """JupyterLab's offline settings: overrides.json and a jupyter_server config file."""
    overrides = prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    overrides.parent.mkdir(parents=True, exist_ok=True)
    overrides.write_text(json.dumps(LAB_SETTINGS_OVERRIDES, indent=2) + "\n")
    server = prefix / "etc" / "jupyter" / "jupyter_server_config.d" / "dpsandbox-offline.json"
    server.parent.mkdir(parents=True, exist_ok=True)
    server.write_text(json.dumps(SERVER_CONFIG, indent=2) + "\n")
    _log(f"wrote JupyterLab's offline settings ({overrides.name}, {server.name})")


def _make_world_readable(prefix: Path) -> None:
    """Analysts' users must read and execute the environment; only root may change it."""
    for parent in [prefix, *prefix.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            os.chmod(parent, mode | 0o005)
    for root, dirs, files in os.walk(prefix):
        for name in dirs:
            path = os.path.join(root, name)
            os.chmod(path, os.stat(path).st_mode | 0o755)  # noqa: S103 (world-readable on purpose)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                st = os.stat(path).st_mode
                os.chmod(path, st | 0o444 | (0o111 if st & 0o100 else 0))


def _verify(prefix: Path) -> None:
    code = "import jupyterlab, jupyterhub, ipykernel, pandas, matplotlib, httpx, rich, sandbox"
    subprocess.run([str(prefix / "bin" / "python"), "-c", code], check=True)
    if not (prefix / "bin" / "jupyterhub-singleuser").exists():
        raise RuntimeError(f"{prefix}/bin/jupyterhub-singleuser is missing after the build")


def build_sandbox_env(
    prefix: Path | None = None,
    *,
    python: Path = DEFAULT_PYTHON,
    lock: Path = REPO_ROOT / "requirements.lock",
    repo: Path = REPO_ROOT,
    packages: tuple[str, ...] = SANDBOX_PACKAGES,
    force: bool = False,
) -> Path:
    """Build (or bring up to date) the sandbox environment and return its prefix."""
    prefix = (prefix or default_prefix()).absolute()
    if not python.exists():
        raise FileNotFoundError(
            f"{python} not found: install Debian's python3 and python3-venv "
            "(apt-get install python3 python3-venv)"
        )
    old_umask = os.umask(0o022)
    try:
        with _build_lock(prefix):
            stamp = {} if force else _read_stamp(prefix)
            deps = _deps_hash(python, lock, packages)
            client = _client_hash(repo)
            if stamp.get("deps") == deps and stamp.get("client") == client:
                _log(f"{prefix} is up to date")
                return prefix
            if stamp.get("deps") != deps:
                _install_dependencies(prefix, python, lock, packages)
            _install_client(prefix, repo)
            _write_lab_settings(prefix)
            _make_world_readable(prefix)
            _verify(prefix)
            _write_stamp(prefix, {"deps": deps, "client": client, "python": str(python)})
            _log(f"{prefix} is ready")
            return prefix
    finally:
        os.umask(old_umask)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", type=Path, default=None, help=f"default {DEFAULT_PREFIX}")
    parser.add_argument("--python", type=Path, default=DEFAULT_PYTHON)
    parser.add_argument("--lock", type=Path, default=REPO_ROOT / "requirements.lock")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    build_sandbox_env(args.prefix, python=args.python, lock=args.lock, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
