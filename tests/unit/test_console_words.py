"""The console's action filter offers every action the code writes to the audit log."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.web.words import ACTIONS

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
# an action written, refused (``denied``), or named for the refusals of a use case
WRITES = re.compile(r"""(?:action=|\.denied\([^,]+,\s*|refusals\([^,()]+,\s*)"([a-z_]+(?:\.[a-z_]+)?)\"""")


def test_every_audited_action_is_a_choice_of_the_filter() -> None:
    written = {m for path in GATEWAY.rglob("*.py") for m in WRITES.findall(path.read_text())}
    written -= {"store_true", "store_false", "append"}  # argparse, not audit actions
    assert written, "the pattern found no audit action: it is out of date"
    assert written <= set(ACTIONS), sorted(written - set(ACTIONS))
