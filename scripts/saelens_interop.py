"""SAELens's side of the SAE file-format checks. Runs in a virtualenv with sae-lens (it pins
transformer-lens < 4, so it cannot share ours), and imports nothing from interp_widgets.

    bash scripts/setup.sh --test      # makes .venv-saelens (torch==2.13.0, sae-lens==6.54.0)

Two commands:

    .venv-saelens/bin/python scripts/saelens_interop.py write tests/data/saelens_6_54
        SAELens writes one SAE per case of `CASES` (random weights, seeded) with `save_model`,
        and beside it `expected.safetensors`: inputs x [8, d_in], its own encode(x) ("acts") and
        forward(x) ("recon"). These are the fixtures `tests/test_sae.py` reads.

    .venv-saelens/bin/python scripts/saelens_interop.py read DIR
        For every folder under DIR with a cfg.json (written by `interp_widgets.sae.SAE.save`) and
        an `input.safetensors` holding x, SAELens loads the SAE with `SAE.load_from_disk` and
        writes `saelens.safetensors` with its encode(x) and forward(x).
        `tests/test_sae.py::test_saelens_reads_what_we_save` runs this when the virtualenv exists
        (`IW_SAELENS_PYTHON`, default .venv-saelens/bin/python).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

D_IN, D_SAE = 16, 40
META = {"hook_name": "blocks.0.hook_resid_pre", "model_name": "toy"}
#: folder -> SAELens config fields beyond d_in / d_sae / metadata
CASES = {
    "standard_ln": {"architecture": "standard", "normalize_activations": "layer_norm"},
    "topk_rescale": {"architecture": "topk", "k": 5, "rescale_acts_by_decoder_norm": True},
    "jumprelu": {"architecture": "jumprelu"},
    "gated": {"architecture": "gated"},
}


def write(out: Path) -> None:
    from sae_lens import SAE

    for i, (name, fields) in enumerate(CASES.items()):
        sae = SAE.from_dict({"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu",
                             "metadata": META, **fields})
        g = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for p in sae.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            if hasattr(sae, "threshold"):
                sae.threshold.copy_(torch.rand(sae.threshold.shape, generator=g) * 0.3)
            x = torch.randn(8, D_IN, generator=g)
            acts, recon = sae.encode(x), sae(x)
        sae.save_model(out / name)
        save_file({"x": x, "acts": acts.contiguous(), "recon": recon.contiguous()},
                  str(out / name / "expected.safetensors"))
        print(f"wrote {out / name}")


def read(root: Path) -> None:
    from sae_lens import SAE

    for folder in sorted(p.parent for p in root.glob("*/cfg.json")):
        sae = SAE.load_from_disk(folder, device="cpu")
        x = load_file(str(folder / "input.safetensors"))["x"]
        with torch.no_grad():
            acts, recon = sae.encode(x), sae(x)
        save_file({"acts": acts.contiguous(), "recon": recon.contiguous()},
                  str(folder / "saelens.safetensors"))
        print(json.dumps({"folder": folder.name, "architecture": sae.cfg.architecture()}))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "read"):
        sys.exit(__doc__)
    {"write": write, "read": read}[sys.argv[1]](Path(sys.argv[2]))
