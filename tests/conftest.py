"""Shared fixtures: the real demo model, loaded once per test session."""

import pytest

import interp_widgets as iw


@pytest.fixture(scope="session")
def model() -> iw.Model:
    """The bundled demo model (LayerNorm folded), on CPU."""
    return iw.load_model("demo", device="cpu")
