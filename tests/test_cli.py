"""The `interp-widgets` command: `info` reports the demo model; `demo` copies the notebooks without
clobbering a user's edits and serves them in JupyterLab."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import interp_widgets as iw
from interp_widgets import cli
from interp_widgets.demo.tasks import TARGETS


def test_info_prints_versions_device_and_demo_metrics(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("torch", "transformer-lens", "device", "demo model", "MB", "layers"):
        assert word in out
    log = json.loads((iw.demo.MODEL_DIR / "training_log.json").read_text())
    for key, value in log["final_metrics"].items():
        line = next(line for line in out.splitlines() if line.split()[:1] == [key])
        target, met = TARGETS[key]
        assert f"{value:.4g}" in line and f"target {target}" in line
        assert line.endswith(": met)" if met(value) else ": not met)")


def test_copy_notebooks_keeps_a_users_edited_copy(tmp_path):
    lines = cli.copy_notebooks(tmp_path)
    assert (tmp_path / "quickstart.ipynb").exists()
    assert all(line.startswith("copied") for line in lines)
    edited = tmp_path / "quickstart.ipynb"
    edited.write_text(edited.read_text().replace("demo", "my own words", 1))
    mine = edited.read_text()
    lines = cli.copy_notebooks(tmp_path)
    assert edited.read_text() == mine, "a user's edits are never overwritten"
    assert any(line.startswith("kept") and "quickstart" in line for line in lines)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("jupyter", path=os.path.dirname(sys.executable)) is None,
                    reason="jupyterlab is not installed")
def test_demo_serves_the_quickstart_notebook(tmp_path):
    port, token = _free_port(), "clitest"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "interp_widgets.cli", "demo", "--dir", str(tmp_path / "nb"),
         "--port", str(port), "--no-browser", "--", f"--IdentityProvider.token={token}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}/api/contents/quickstart.ipynb?token={token}&content=0"
        deadline, last = time.time() + 90, None
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    model = json.load(r)
                    break
            except OSError as err:
                last = err
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not answer on port {port}: {last}")
        assert model["name"] == "quickstart.ipynb" and model["type"] == "notebook"
        assert (tmp_path / "nb" / "quickstart.ipynb").exists()
        proc.terminate()  # SIGTERM to the CLI must stop JupyterLab too, not orphan it
        proc.wait(timeout=30)
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
