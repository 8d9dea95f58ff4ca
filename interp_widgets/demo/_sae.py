"""The demo SAE: a TopK SAE on the demo model's residual stream (trained by
scripts/train_demo_sae.py; its evaluation is in `sae/README.md`)."""

from __future__ import annotations

from pathlib import Path

import torch

SAE_DIR = Path(__file__).parent / "sae"


def load_sae(*, device: str | torch.device | None = "cpu"):
    """The bundled demo SAE (`interp_widgets.sae.SAE`), for `load_model("demo")`."""
    from ..sae import load_sae as _load

    if not (SAE_DIR / "cfg.json").exists():
        raise FileNotFoundError(f"The demo SAE is missing from {SAE_DIR}. Reinstall the package, "
                                "or train it with scripts/train_demo_sae.py.")
    return _load(SAE_DIR, device=device)
