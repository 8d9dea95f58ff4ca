"""Fixtures for the real-browser tests: one JupyterLab server and one Chromium per session.

Run them with ``pytest tests/e2e -m e2e``.  Without ``/usr/bin/chromium`` (or ``$IW_CHROMIUM``)
the suite is skipped, unless ``CI=true``, where a missing browser is an error.
Screenshots, page console logs and the server log go to ``tests/e2e/artifacts/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # also under --import-mode=importlib
import e2e_harness as h  # noqa: E402

ARTIFACTS = Path(__file__).parent / "artifacts"
E2E_DIR = Path(__file__).parent.resolve()


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: real-browser tests (JupyterLab + Chromium)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).resolve().parent == E2E_DIR:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def jupyter_server(chromium_required, artifacts_dir):
    server = h.JupyterServer(log_path=artifacts_dir / "jupyter-server.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.cleanup()


@pytest.fixture(scope="session")
def context(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(60_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(lab, request, artifacts_dir):
    """The test module's `lab` notebook page (a module-scoped fixture each module defines); a test
    that fails leaves a screenshot and the console log, labelled by the module's name."""
    yield lab
    label = Path(str(request.node.fspath)).stem.removeprefix("test_").removesuffix("_browser")
    h.save_failure_artifacts(request, lab, label, artifacts_dir)
