"""Build the sandbox image on this machine: Debian packages and project wheels, no registry.

Three steps, each named by a hash of its inputs and skipped when its output exists
(so ``dpsandbox image build`` with nothing changed returns at once):

1. **base** ``dpsandbox/sandbox-base:<hash>``: ``mmdebstrap`` (or ``debootstrap``) of
   this machine's Debian suite with the apt sources it already uses
   (``/etc/apt/sources.list*``), holding ``python3`` and ``python3-venv``, put into the
   engine with ``docker import``;
2. **wheels**: ``pip wheel`` on the host with Debian's ``python3`` (the interpreter the
   base holds) of :data:`~sandbox.hub.build_env.SANDBOX_PACKAGES`, pinned by
   ``requirements.lock``, into a cache directory;
3. **image** ``dpsandbox/sandbox:<hash>``: ``sandbox/image/Dockerfile`` built with
   ``network_mode="none"`` over those wheels and the ``sandbox`` client package.

:func:`sandbox_image_tag` names the image without building anything (what the
spawner runs); :func:`build_image` makes it. Errors: :class:`ImageBuildError`.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .build_env import (
    DEFAULT_PYTHON,
    REPO_ROOT,
    SANDBOX_PACKAGES,
    _client_sources,
    _sandbox_constraints,
    inputs_digest,
)

__all__ = [
    "BASE_PACKAGES",
    "IMAGE_DIR",
    "ImageBuildError",
    "ImageInputs",
    "build_image",
    "image_exists",
    "main",
    "sandbox_image_tag",
]

IMAGE_DIR = Path(__file__).resolve().parents[1] / "image"
BASE_PACKAGES = ("python3", "python3-venv")
BASE_REPOSITORY = "dpsandbox/sandbox-base"
REPOSITORY = "dpsandbox/sandbox"
# Bump when the build procedure itself changes in a way that needs a rebuild.
BUILD_VERSION = "1"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))

Progress = Callable[[str], None]


class ImageBuildError(RuntimeError):
    """The image could not be built; the message says which step failed and why."""


def _say(message: str) -> None:
    print(f"[sandbox-image] {message}", file=sys.stderr, flush=True)


def _digest(*parts: bytes) -> str:
    return inputs_digest(*parts)[:16]  # short enough for an image tag


def apt_source_files() -> list[Path]:
    """The apt sources this machine uses (``.list`` and deb822 ``.sources`` files)."""
    files: list[Path] = []
    for place in APT_SOURCES:
        if place.is_file():
            files.append(place)
        elif place.is_dir():
            files.extend(sorted(p for p in place.iterdir() if p.suffix in {".list", ".sources"}))
    return [f for f in files if f.read_text().strip()]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def sandbox_closure(packages: tuple[str, ...]) -> set[str]:
    """The sandbox packages and everything they require, as installed here from the lock.

    Read from this environment's metadata (installed from the same ``requirements.lock``),
    so the image depends only on the pins of what it holds: a pin of the gateway's alone
    changing does not rebuild it.
    """
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import InvalidRequirement, Requirement

    seen: set[str] = set()
    todo = [_canonical(p) for p in packages]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for line in requires:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_canonical(requirement.name))
    return seen


def sandbox_pins(lock: bytes, packages: tuple[str, ...]) -> str:
    """The lock's pins of the sandbox's packages (constraints for ``pip wheel`` and the image)."""
    closure = sandbox_closure(packages)
    kept = []
    for line in _sandbox_constraints_text(lock.decode()).splitlines():
        name = line.split("==", 1)[0].strip()
        if name and _canonical(name) in closure:
            kept.append(line.strip())
    return "\n".join(kept) + "\n"


def _sandbox_constraints_text(lock: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".lock") as f:
        f.write(lock)
        f.flush()
        return _sandbox_constraints(Path(f.name))


def debian_suite() -> str:
    """This machine's Debian release name (``bookworm``), from /etc/os-release."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    raise ImageBuildError("not a Debian machine (no VERSION_CODENAME in /etc/os-release)")


@dataclass(frozen=True)
class ImageInputs:
    """Everything the image is made of; its tags are hashes of these."""

    suite: str
    sources: tuple[tuple[str, bytes], ...]  # (path, content) of each apt source file
    python: Path  # the host interpreter that downloads wheels (same as the base's)
    lock: bytes
    packages: tuple[str, ...]
    dockerfile: bytes
    client: tuple[tuple[str, bytes], ...]  # (relative path, content) of the client package

    @classmethod
    def here(cls, repo: Path = REPO_ROOT) -> ImageInputs:
        sources = apt_source_files()
        if not sources:
            raise ImageBuildError("no apt sources in /etc/apt/sources.list or sources.list.d")
        return cls(
            suite=debian_suite(),
            sources=tuple((str(p), p.read_bytes()) for p in sources),
            python=DEFAULT_PYTHON,
            lock=(repo / "requirements.lock").read_bytes(),
            packages=SANDBOX_PACKAGES,
            dockerfile=(IMAGE_DIR / "Dockerfile").read_bytes(),
            client=tuple(
                (str(p.relative_to(repo / "sandbox")), p.read_bytes()) for p in _client_sources(repo)
            ),
        )

    @property
    def base_tag(self) -> str:
        parts = [BUILD_VERSION.encode(), self.suite.encode(), " ".join(BASE_PACKAGES).encode()]
        parts += [name.encode() + b"\0" + content for name, content in self.sources]
        return f"{BASE_REPOSITORY}:{_digest(*parts)}"

    @property
    def pins(self) -> str:
        return sandbox_pins(self.lock, self.packages)

    @property
    def wheels_key(self) -> str:
        return _digest(
            BUILD_VERSION.encode(),
            str(self.python).encode(),
            self.pins.encode(),
            "\n".join(self.packages).encode(),
        )

    @property
    def tag(self) -> str:
        parts = [self.base_tag.encode(), self.wheels_key.encode(), self.dockerfile]
        parts += [name.encode() + b"\0" + content for name, content in self.client]
        return f"{REPOSITORY}:{_digest(*parts)}"


def sandbox_image_tag(repo: Path = REPO_ROOT) -> str:
    """The tag of the sandbox image for this machine and these sources (nothing is built)."""
    return ImageInputs.here(repo).tag


def _docker() -> Any:
    import docker

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ImageBuildError(f"the Docker engine does not answer ({exc}); is dockerd running?") from exc
    return client


def image_exists(tag: str, client: Any = None) -> bool:
    import docker

    client = client or _docker()
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def default_cache_dir() -> Path:
    configured = os.environ.get("DPSANDBOX_IMAGE_CACHE")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/cache/dpsandbox/image")
    return Path("~/.cache/dpsandbox/image").expanduser()


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One build at a time on this machine (make and a test run, say)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(step: str, command: list[str], **kwargs: Any) -> None:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise ImageBuildError(f"{step} failed ({' '.join(command[:3])} ...):\n{tail}")


def _rootfs_tar(inputs: ImageInputs, target: Path) -> None:
    """A Debian minbase root filesystem as a tarball, from this machine's apt sources."""
    include = ",".join(BASE_PACKAGES)
    if shutil.which("mmdebstrap"):
        sources = [name for name, _ in inputs.sources]
        _run(
            "mmdebstrap",
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={include}",
                "--format=tar",
                inputs.suite,
                str(target),
                *sources,
            ],
        )
        return
    if not shutil.which("debootstrap"):
        raise ImageBuildError("neither mmdebstrap nor debootstrap is installed (apt-get install mmdebstrap)")
    with tempfile.TemporaryDirectory(dir=target.parent) as root:
        _run(
            "debootstrap",
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={include}",
                inputs.suite,
                root,
                _first_mirror(inputs),
            ],
        )
        _run("tar", ["tar", "--numeric-owner", "-C", root, "-cf", str(target), "."])


def _first_mirror(inputs: ImageInputs) -> str:
    for _, content in inputs.sources:
        for line in content.decode().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1:
                return words[1]
            if words[:1] == ["deb"]:
                return next(w for w in words[1:] if "://" in w)
    raise ImageBuildError("no mirror URI in the apt sources")


def _build_base(client: Any, inputs: ImageInputs, cache: Path, say: Progress) -> None:
    if image_exists(inputs.base_tag, client):
        say(f"base {inputs.base_tag} is there")
        return
    say(
        f"base: Debian {inputs.suite} minbase + {', '.join(BASE_PACKAGES)} from this machine's "
        "apt sources (a few minutes on first build)"
    )
    started = time.monotonic()
    tarball = cache / "rootfs.tar"
    try:
        _rootfs_tar(inputs, tarball)
        repository, tag = inputs.base_tag.split(":")
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)
    finally:
        tarball.unlink(missing_ok=True)
    say(f"base {inputs.base_tag} imported in {time.monotonic() - started:.0f} s")


def _wheels(inputs: ImageInputs, cache: Path, say: Progress) -> Path:
    """Wheels of every sandbox package, downloaded (or built) on the host."""
    wheels = cache / f"wheels-{inputs.wheels_key}"
    if (wheels / ".complete").exists():
        say(f"wheels are there ({len(list(wheels.glob('*.whl')))} in {wheels})")
        return wheels
    say(f"wheels: {', '.join(inputs.packages)} pinned by requirements.lock")
    started = time.monotonic()
    venv = cache / "pip-venv"
    if not (venv / "bin" / "pip").exists():
        _run("venv for pip", [str(inputs.python), "-m", "venv", "--clear", str(venv)])
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    constraints = wheels / "constraints.txt"
    constraints.write_text(inputs.pins)
    _run(
        "pip wheel",
        [
            str(venv / "bin" / "pip"),
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(wheels),
            "-c",
            str(constraints),
            *inputs.packages,
        ],
    )
    (wheels / ".complete").touch()
    for old in cache.glob("wheels-*"):
        if old != wheels:
            shutil.rmtree(old, ignore_errors=True)
    say(f"{len(list(wheels.glob('*.whl')))} wheels in {time.monotonic() - started:.0f} s")
    return wheels


def _context(inputs: ImageInputs, wheels: Path, into: Path) -> None:
    """The build context: Dockerfile, wheels, pins and the ``sandbox`` package (client only)."""
    shutil.copyfile(IMAGE_DIR / "Dockerfile", into / "Dockerfile")
    shutil.copytree(wheels, into / "wheels", ignore=shutil.ignore_patterns("constraints.txt", ".complete"))
    shutil.copyfile(wheels / "constraints.txt", into / "constraints.txt")
    (into / "requirements.txt").write_text("\n".join(inputs.packages) + "\n")
    for name, content in inputs.client:
        path = into / "sandbox" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _build_sandbox(
    client: Any, inputs: ImageInputs, wheels: Path, cache: Path, say: Progress, *, nocache: bool = False
) -> None:
    import docker

    say(f"image {inputs.tag}: docker build --network none")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache, prefix="context-") as tmp:
        _context(inputs, wheels, Path(tmp))
        try:
            for chunk in client.api.build(
                path=tmp,
                tag=inputs.tag,
                network_mode="none",
                rm=True,
                forcerm=True,
                nocache=nocache,
                decode=True,
                buildargs={"BASE": inputs.base_tag},
            ):
                if "error" in chunk:
                    raise ImageBuildError(f"docker build: {chunk['error'].strip()}")
                line = str(chunk.get("stream", "")).strip()
                if line.startswith("Step "):
                    say(f"  {line[:100]}")
        except docker.errors.DockerException as exc:
            raise ImageBuildError(f"docker build: {exc}") from exc
    if not image_exists(inputs.tag, client):
        raise ImageBuildError(f"docker build finished without {inputs.tag}")
    say(f"image {inputs.tag} built in {time.monotonic() - started:.0f} s")


def build_image(*, force: bool = False, say: Progress = _say, repo: Path = REPO_ROOT) -> str:
    """Build (or find) the sandbox image and return its tag."""
    inputs = ImageInputs.here(repo)
    client = _docker()
    if not force and image_exists(inputs.tag, client):
        say(f"{inputs.tag} is up to date")
        return inputs.tag
    cache = default_cache_dir()
    with _locked(cache):
        if not force and image_exists(inputs.tag, client):
            return inputs.tag
        started = time.monotonic()
        if force:  # everything again: base, wheels, every layer
            for tag in (inputs.tag, inputs.base_tag):
                _remove(client, tag)
            shutil.rmtree(cache / f"wheels-{inputs.wheels_key}", ignore_errors=True)
        _build_base(client, inputs, cache, say)
        wheels = _wheels(inputs, cache, say)
        _build_sandbox(client, inputs, wheels, cache, say, nocache=force)
        _remove_older(client, keep={inputs.tag, inputs.base_tag}, say=say)
        say(f"sandbox image ready in {time.monotonic() - started:.0f} s: {inputs.tag}")
    return inputs.tag


def _remove_older(client: Any, *, keep: set[str], say: Progress) -> None:
    """Earlier builds' tags (a running container keeps its image: the engine refuses)."""
    for repository in (REPOSITORY, BASE_REPOSITORY):
        for image in client.images.list(name=repository):
            for tag in image.tags:
                if tag.startswith(f"{repository}:") and tag not in keep and _remove(client, tag):
                    say(f"removed the earlier image {tag}")


def _remove(client: Any, tag: str) -> bool:
    import docker

    try:
        client.images.remove(tag)
    except docker.errors.DockerException:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild the base and the image")
    parser.add_argument("--tag", action="store_true", help="print the tag and build nothing")
    args = parser.parse_args(argv)
    try:
        if args.tag:
            print(sandbox_image_tag())
            return 0
        print(build_image(force=args.force))
    except ImageBuildError as exc:
        _say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
