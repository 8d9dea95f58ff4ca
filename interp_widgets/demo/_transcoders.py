"""The demo transcoders: per-layer and cross-layer TopK transcoders of the demo model's MLPs
(trained by scripts/train_demo_transcoders.py; evaluation in `transcoders/README.md`)."""

from __future__ import annotations

from pathlib import Path

import torch

TRANSCODERS_DIR = Path(__file__).parent / "transcoders"


def load_transcoders(kind: str = "per_layer", *, device: str | torch.device | None = "cpu"):
    """The bundled demo transcoders (`interp_widgets.sae.Transcoders`) for `load_model("demo")`:
    kind "per_layer" (one per MLP) or "clt" (cross-layer)."""
    from ..sae.transcoder import load_transcoders as _load

    if kind not in ("per_layer", "clt"):
        raise ValueError(f"kind must be 'per_layer' or 'clt', not {kind!r}.")
    folder = TRANSCODERS_DIR / kind
    if not (folder / "config.yaml").exists():
        raise FileNotFoundError(f"The demo transcoders ({kind}) are missing from {folder}. "
                                "Reinstall the package, or train them with "
                                "scripts/train_demo_transcoders.py.")
    return _load(folder, device=device)
