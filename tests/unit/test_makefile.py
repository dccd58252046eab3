"""make system-packages installs a Java runtime apt has (Debian 12: openjdk-17, 13: openjdk-21).

``make jre-package`` prints the package ``system-packages`` would install when java is
missing; it asks apt-cache only. Other Debian releases are played by a stand-in apt-cache
that answers ``policy`` as apt does: a candidate version, or ``(none)`` for a name apt knows
only because another package mentions it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
APT_CACHE = """#!/bin/sh
[ "$1" = policy ] || exit 100
case " $CANDIDATES " in *" $2 "*) candidate="1.0-1" ;; *) candidate="(none)" ;; esac
printf '%s:\\n  Installed: (none)\\n  Candidate: %s\\n  Version table:\\n' "$2" "$candidate"
"""

pytestmark = pytest.mark.skipif(MAKE is None, reason="no make on this machine")


def _jre_package(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert MAKE is not None
    return subprocess.run([MAKE, "-s", "--no-print-directory", "jre-package", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.mark.parametrize(("candidates", "chosen"), [
    ("openjdk-17-jre-headless default-jre-headless", "openjdk-17-jre-headless"),  # Debian 12
    ("openjdk-21-jre-headless default-jre-headless", "openjdk-21-jre-headless"),  # Debian 13
    ("default-jre-headless", "default-jre-headless"),
])
def test_the_first_java_runtime_apt_can_install_is_chosen(
    tmp_path: Path, candidates: str, chosen: str
) -> None:
    fake = tmp_path / "apt-cache"
    fake.write_text(APT_CACHE)
    fake.chmod(0o755)
    result = _jre_package(f"APT_CACHE={fake}", env={"PATH": "/usr/bin:/bin", "CANDIDATES": candidates})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == chosen


def test_without_an_installable_java_runtime_the_install_stops(tmp_path: Path) -> None:
    fake = tmp_path / "apt-cache"
    fake.write_text(APT_CACHE)
    fake.chmod(0o755)
    result = _jre_package(f"APT_CACHE={fake}", env={"PATH": "/usr/bin:/bin", "CANDIDATES": ""})
    assert result.returncode != 0
    assert "no Java runtime package among" in result.stderr


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="not a Debian machine")
def test_this_machines_choice_is_a_package_apt_has() -> None:
    result = _jre_package()
    assert result.returncode == 0, result.stderr
    chosen = result.stdout.strip()
    record = subprocess.run(["apt-cache", "show", "--no-all-versions", chosen],
                            capture_output=True, text=True, timeout=60, check=False)
    assert f"Package: {chosen}\n" in record.stdout
