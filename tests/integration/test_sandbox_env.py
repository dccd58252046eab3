"""The built sandbox environment (``make sandbox-env``): JupyterLab without the news and
update-check pop-ups, and the client library with its Chinese catalog."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sandbox.hub import build_env

ENV = build_env.default_prefix()
pytestmark = pytest.mark.skipif(not (ENV / "bin" / "jupyterhub-singleuser").exists(),
                                reason=f"no sandbox environment at {ENV} (make sandbox-env)")


def test_jupyterlab_news_and_update_check_are_off() -> None:
    overrides = json.loads((ENV / "share/jupyter/lab/settings/overrides.json").read_text())
    notification = overrides["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}
    # the settings exist in this JupyterLab's schema (a misspelt key would be ignored)
    schema = json.loads((ENV / "share/jupyter/lab/schemas/@jupyterlab/apputils-extension/"
                               "notification.json").read_text())
    assert {"fetchNews", "checkForUpdates"} <= set(schema["properties"])
    server = json.loads((ENV / "etc/jupyter/jupyter_server_config.d/dpsandbox-offline.json")
                        .read_text())
    assert server["LabApp"]["news_url"] is None
    code = ("from jupyterlab.labapp import LabApp; from traitlets.config import Config;"
            "import json, sys; c = Config(json.load(open(sys.argv[1])));"
            "app = LabApp(config=c); print(app.news_url, app.check_for_updates_class.__name__)")
    out = subprocess.run([str(ENV / "bin/python"), "-c", code,
                          str(ENV / "etc/jupyter/jupyter_server_config.d/dpsandbox-offline.json")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "NeverCheckForUpdate"]


def test_the_client_speaks_chinese_in_the_sandbox() -> None:
    code = ("from sandbox.client._suggest import did_you_mean;"
            "print(did_you_mean('orign', ['origin']))")
    out = subprocess.run([str(ENV / "bin/python"), "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "DPSANDBOX_LANG": "zh_CN",
                                          "PYTHONPATH": ""}, cwd=Path("/"))
    assert out.stdout.strip() == "；您是不是要找 origin？"
