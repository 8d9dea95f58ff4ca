"""Shared fixtures: the real demo model, and one headless Chromium for every browser test.

Playwright's sync API allows one running instance per thread, so the unit tests that open static
exports and the e2e tests in JupyterLab share this session's browser."""

import os
import sys
from pathlib import Path

import pytest

import interp_widgets as iw

sys.path.insert(0, str(Path(__file__).parent / "e2e"))
import e2e_harness as harness  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (or set IW_RUN_SLOW=1)")


def pytest_collection_modifyitems(config, items):
    """Tests marked `slow` run only with --run-slow or IW_RUN_SLOW=1; the default run (CI's)
    keeps a representative subset of each capability unmarked."""
    if config.getoption("--run-slow") or os.environ.get("IW_RUN_SLOW", "") in ("1", "true"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow or IW_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def model() -> iw.Model:
    """The bundled demo model (LayerNorm folded), on CPU."""
    return iw.load_model("demo", device="cpu")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture(scope="session")
def chromium_required():
    """The Chromium path; skips (or, with CI=true, fails) when it is missing."""
    if harness.chromium_available():
        return harness.CHROMIUM
    msg = (f"Chromium not found at {harness.CHROMIUM} (set IW_CHROMIUM or `apt-get install "
           "chromium`); the browser tests need it")
    if _in_ci():
        pytest.fail(msg + " and CI=true, so they must run.")
    pytest.skip(msg + ".")


@pytest.fixture(scope="session")
def browser(chromium_required):
    """One headless Chromium (Debian's, via Playwright) for the whole session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = harness.launch_browser(pw)
        try:
            yield b
        finally:
            b.close()
