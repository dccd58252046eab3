"""``dpsandbox image``: the sandbox image of Docker isolation (``sandbox/hub/image.py``)."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.common import console, err
from gateway.i18n import _


def cmd_image_build(args: argparse.Namespace) -> int:
    from sandbox.hub.image import ImageBuildError, build_image

    try:
        tag = build_image(force=args.force)
    except ImageBuildError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    console.print(tag)
    return 0


def cmd_image_tag(args: argparse.Namespace) -> int:
    from sandbox.hub.image import ImageBuildError, image_exists, sandbox_image_tag

    try:
        tag = sandbox_image_tag()
        built = image_exists(tag)
    except ImageBuildError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    console.print(_("%(tag)s (built)") % {"tag": tag} if built
                  else _("%(tag)s (not built: dpsandbox image build)") % {"tag": tag})
    return 0 if built else 3


def add_image_commands(sub: Any) -> None:
    """Add ``image build`` and ``image tag``."""
    image = sub.add_parser("image", help=_("the sandbox image (Docker isolation)")).add_subparsers(
        dest="action", required=True
    )
    build = image.add_parser(
        "build", help=_("build the sandbox image here (Debian packages + wheels; no registry)")
    )
    build.add_argument("--force", action="store_true", help=_("rebuild the base and the image"))
    build.set_defaults(func=cmd_image_build)
    image.add_parser("tag", help=_("the tag the hub runs, and whether it is built")).set_defaults(
        func=cmd_image_tag
    )
