"""The bundled offline demo: a small GPT-2-architecture model trained on a synthetic corpus.

`interp_widgets.load_model("demo")` loads the model from `MODEL_DIR`; `corpus(n)` generates the
English-like text it was trained on (see `corpus.py` for the grammar)."""

from pathlib import Path

from ._sae import SAE_DIR, load_sae
from ._transcoders import TRANSCODERS_DIR, load_transcoders
from .corpus import corpus

MODEL_DIR = Path(__file__).parent / "model"

__all__ = ["MODEL_DIR", "SAE_DIR", "TRANSCODERS_DIR", "corpus", "load_sae", "load_transcoders"]
