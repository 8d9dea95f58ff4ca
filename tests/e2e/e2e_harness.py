"""Real-browser harness shared by the e2e tests, the screenshot script and the render benchmark.

It starts a JupyterLab 4 server (which also serves Notebook 7 at ``/notebooks/...``) on a free port
of 127.0.0.1 with a random token and isolated Jupyter config/data/runtime/settings directories,
and drives Debian's ``/usr/bin/chromium`` through Playwright.  JupyterLab is started with
``expose_app_in_browser`` so the page's ``window.jupyterapp`` can run commands
(``notebook:run-all-cells``, theme changes) without clicking through menus.

Kept out of ``conftest.py`` so that ``scripts/make_screenshots.py`` and
``benchmarks/bench_render.py`` can import it (``sys.path.insert(0, "tests/e2e")``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("IW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

# Plugins that could open popups or reach the network; disabled in the isolated labconfig.
_DISABLED_PLUGINS = {
    "@jupyterlab/apputils-extension:announcements": True,
}


def _die_with_parent() -> None:
    """In the child before exec (Linux): get SIGTERM when the process that started us dies, so a
    test run killed by a timeout or SIGKILL leaves no server behind (kernels follow their
    server: ipykernel exits when its parent goes)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux/glibc: teardown still stops the server
        pass


def chromium_available() -> bool:
    return Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (kernels run in their own session, so killpg misses them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces, so split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def new_notebook(cells: list[str | tuple[str, str]]) -> dict:
    """A notebook dict (nbformat 4) from code strings or ``("markdown", text)`` tuples."""
    nb_cells = []
    for cell in cells:
        kind, src = ("code", cell) if isinstance(cell, str) else cell
        c = {"cell_type": kind, "metadata": {}, "source": src}
        if kind == "code":
            c.update(execution_count=None, outputs=[])
        nb_cells.append(c)
    return {
        "cells": nb_cells,
        "metadata": {
            "kernelspec": dict(KERNELSPEC),
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


class JupyterServer:
    """A JupyterLab server in a throw-away root dir.  Use as a context manager."""

    def __init__(self, log_path: Path | None = None, startup_timeout: float = 90.0):
        self.tmp = Path(tempfile.mkdtemp(prefix="iw-e2e-"))
        self.root = self.tmp / "root"
        self.root.mkdir()
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or (self.tmp / "jupyter.log")
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self._log = None

    # -- lifecycle -------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        cfg = self.tmp / "config"
        for sub in ("config", "data", "runtime", "ipython", "settings", "workspaces"):
            (self.tmp / sub).mkdir(exist_ok=True)
        (cfg / "labconfig").mkdir(exist_ok=True)
        (cfg / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": _DISABLED_PLUGINS})
        )
        notif = self.tmp / "settings" / "@jupyterlab" / "apputils-extension"
        notif.mkdir(parents=True, exist_ok=True)
        (notif / "notification.jupyterlab-settings").write_text(
            json.dumps({"checkForUpdates": False, "fetchNews": "false"})
        )
        (cfg / "jupyter_server_config.json").write_text(
            json.dumps(
                {
                    "LabApp": {"news_url": None, "expose_app_in_browser": True},
                    "JupyterNotebookApp": {"expose_app_in_browser": True},
                }
            )
        )
        venv_bin = str(Path(sys.executable).parent)
        pythonpath = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(":") if p]
        env.update(
            JUPYTER_CONFIG_DIR=str(cfg),
            JUPYTER_DATA_DIR=str(self.tmp / "data"),
            JUPYTER_RUNTIME_DIR=str(self.tmp / "runtime"),
            IPYTHONDIR=str(self.tmp / "ipython"),
            JUPYTERLAB_SETTINGS_DIR=str(self.tmp / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.tmp / "workspaces"),
            JUPYTER_PLATFORM_DIRS="1",
            PATH=venv_bin + os.pathsep + env.get("PATH", ""),
            # Until the package is pip-installed the kernel must still import interp_widgets.
            PYTHONPATH=os.pathsep.join(dict.fromkeys(pythonpath)),
            PYTHONUNBUFFERED="1",
        )
        env.pop("JUPYTER_PATH", None)
        env.pop("JUPYTER_CONFIG_PATH", None)
        return env

    def start(self) -> JupyterServer:
        cmd = [
            sys.executable, "-m", "jupyter", "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.open_browser=False",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",
            "--JupyterNotebookApp.expose_app_in_browser=True",
            "--LabApp.workspaces_dir=" + str(self.tmp / "workspaces"),
            "--LabApp.user_settings_dir=" + str(self.tmp / "settings"),
            "--LabApp.extension_manager=readonly",
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, env=self._env(), cwd=self.root, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited early:\n{self.log_text()[-4000:]}")
            try:
                self.api("GET", "/api/status")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"jupyter lab did not start in {self.startup_timeout}s")

    def stop(self) -> None:
        """Shut down kernels and server; then kill whatever of the tree is left, by pid."""
        if self.proc is None:
            return
        descendants = _descendants(self.proc.pid)
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                for k in self.api("GET", "/api/kernels"):
                    self.api("DELETE", f"/api/kernels/{k['id']}", timeout=10)
            with contextlib.suppress(Exception):
                self.api("POST", "/api/shutdown", timeout=5)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [p for p in [self.proc.pid, *descendants] if _alive(p)]
            if not pids:
                break
            for p in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, sig)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(_alive(p) for p in pids):
                time.sleep(0.1)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        if self._log:
            self._log.close()
        self.proc = None

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> JupyterServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.cleanup()

    # -- helpers ---------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 5):
        req = urllib.request.Request(
            self.base_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read()
        return json.loads(data) if data else None

    def put_notebook(self, name: str, nb: dict | Path) -> str:
        """Write a notebook into the server's root (a copy if ``nb`` is a path); return its name."""
        if isinstance(nb, Path):
            nb = json.loads(nb.read_text())
        (self.root / name).write_text(json.dumps(nb, indent=1))
        return name

    def lab_url(self, name: str) -> str:
        return f"{self.base_url}/lab/tree/{name}?token={self.token}&reset"

    def notebook7_url(self, name: str) -> str:
        return f"{self.base_url}/notebooks/{name}?token={self.token}"


def save_failure_artifacts(request, nbpage: NotebookPage, label: str, out_dir: Path) -> None:
    """Screenshot + console log of ``nbpage`` when the test behind ``request`` failed."""
    rep = getattr(request.node, "rep_call", None)
    if rep is None or not rep.failed:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"FAILED-{request.node.name}-{label}".replace("/", "_")
    with contextlib.suppress(Exception):  # best effort while reporting another failure
        nbpage.page.screenshot(path=str(out_dir / f"{stem}.png"), full_page=True)
    (out_dir / f"{stem}.console.txt").write_text("\n".join(nbpage.console))


@contextlib.contextmanager
def run_notebook(server: JupyterServer, context, name: str, cells: list, ready: list[str],
                 timeout: float = 300_000):
    """Put a notebook of ``cells`` on ``server`` as ``name``, open it in JupyterLab in a new page
    of the browser ``context``, run every cell and wait until each selector in ``ready`` shows;
    yields the ``NotebookPage`` and closes the page afterwards."""
    server.put_notebook(name, new_notebook(cells))
    nbp = NotebookPage(context.new_page(), server, name).open()
    nbp.run_all(timeout=timeout)
    for selector in ready:
        nbp.page.locator(selector).first.wait_for(timeout=60_000)
    try:
        yield nbp
    finally:
        nbp.page.close()


def launch_browser(playwright, headless: bool = True):
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=headless, args=CHROMIUM_ARGS
    )


# ---- page-side helpers (JupyterLab and Notebook 7 share the JupyterFrontEnd API) ---------

_JS_NOTEBOOK_PANEL = """
() => {
  const app = window.jupyterapp;
  if (!app) return null;
  const w = app.shell.currentWidget;
  return w && w.content && w.sessionContext ? w : null;
}
"""

JS_KERNEL_STATE = """
() => {
  const app = window.jupyterapp;
  const w = app && app.shell.currentWidget;
  if (!w || !w.sessionContext) return 'no-panel';
  const sc = w.sessionContext;
  const k = sc.session && sc.session.kernel;
  if (!sc.isReady || !k) return 'starting';
  return k.status;
}
"""


class NotebookPage:
    """A Playwright page showing one notebook in JupyterLab (``ui='lab'``) or Notebook 7."""

    def __init__(self, page, server: JupyterServer, name: str, ui: str = "lab"):
        self.page = page
        self.server = server
        self.name = name
        self.ui = ui
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def open(self, timeout: float = 120_000) -> NotebookPage:
        url = (
            self.server.lab_url(self.name)
            if self.ui == "lab"
            else self.server.notebook7_url(self.name)
        )
        self.page.goto(url)
        self.page.wait_for_function(_JS_NOTEBOOK_PANEL, timeout=timeout)
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout)
        self.wait_kernel_idle(timeout=timeout)
        return self

    def wait_kernel_idle(self, timeout: float = 120_000) -> None:
        self.page.wait_for_function(f"({JS_KERNEL_STATE})() === 'idle'", timeout=timeout)

    def command(self, command_id: str, args: dict | None = None):
        return self.page.evaluate(
            "([id, args]) => window.jupyterapp.commands.execute(id, args)",
            [command_id, args or {}],
        )

    def run_all(self, timeout: float = 300_000) -> None:
        """Run every cell and wait until the kernel has answered all of them."""
        self.wait_kernel_idle(timeout=timeout)
        n = self.code_cell_count()
        self.command("notebook:run-all-cells")
        self.wait_executed(n, timeout=timeout)

    def code_cell_count(self) -> int:
        return self.page.evaluate(
            """() => {
              const nb = window.jupyterapp.shell.currentWidget.content;
              return nb.widgets.filter(c => c.model.type === 'code').length;
            }"""
        )

    def wait_executed(self, n_code_cells: int, timeout: float = 300_000) -> None:
        """Wait until ``n_code_cells`` code cells have an execution count and the kernel idles."""
        self.page.wait_for_function(
            """(n) => {
              const w = window.jupyterapp.shell.currentWidget;
              const cells = w.content.widgets.filter(c => c.model.type === 'code');
              const done = cells.filter(c => c.model.executionCount !== null).length;
              const k = w.sessionContext.session && w.sessionContext.session.kernel;
              return done >= n && k && k.status === 'idle';
            }""",
            arg=n_code_cells,
            timeout=timeout,
        )

    def run_code(self, source: str, timeout: float = 120_000) -> str:
        """Append a code cell with ``source``, run it, return its outputs' text."""
        self.wait_kernel_idle(timeout=timeout)
        index = self.page.evaluate(
            """(src) => {
              const w = window.jupyterapp.shell.currentWidget;
              const model = w.content.model;
              model.sharedModel.insertCell(model.cells.length, {cell_type: 'code', source: src});
              const i = model.cells.length - 1;
              w.content.activeCellIndex = i;
              w.content.deselectAll();
              return i;
            }""",
            source,
        )
        self.command("notebook:run-cell")
        self.page.wait_for_function(
            """(i) => {
              const w = window.jupyterapp.shell.currentWidget;
              const c = w.content.widgets[i];
              const k = w.sessionContext.session && w.sessionContext.session.kernel;
              return c.model.executionCount !== null && k && k.status === 'idle';
            }""",
            arg=index,
            timeout=timeout,
        )
        return self.cell_output_text(index)

    def run_json(self, source: str, timeout: float = 120_000):
        """Run ``source`` (which prints one JSON line last) in the kernel and decode that line."""
        return json.loads(self.run_code(source, timeout=timeout).strip().splitlines()[-1])

    def cell_output_text(self, index: int) -> str:
        return self.page.evaluate(
            """(i) => {
              const c = window.jupyterapp.shell.currentWidget.content.widgets[i];
              const out = c.outputArea ? c.outputArea.node : c.node;
              return out.innerText;
            }""",
            index,
        )

    def outputs_json(self) -> list[list[dict]]:
        """The output models of every code cell (as saved to .ipynb)."""
        return self.page.evaluate(
            """() => window.jupyterapp.shell.currentWidget.content.widgets
                 .filter(c => c.model.type === 'code')
                 .map(c => c.model.outputs.toJSON())"""
        )

    def set_theme(self, theme: str) -> None:
        """``'JupyterLab Light'`` or ``'JupyterLab Dark'``; waits until the body says so."""
        self.command("apputils:change-theme", {"theme": theme})
        light = "true" if "Light" in theme else "false"
        self.page.wait_for_function(
            f"document.body.dataset.jpThemeLight === '{light}'", timeout=30_000
        )
        # JupyterLab shows its splash screen while the theme's CSS loads.
        self.page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=30_000)
        self.page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
