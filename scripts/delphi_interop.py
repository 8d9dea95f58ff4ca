"""Delphi's side of the latent-cache check. Runs in the Delphi virtualenv (.venv-delphi, made by
`scripts/setup.sh --test`: eai-delphi installed without its vLLM / bitsandbytes / sparsify
dependencies, which only its LLM clients and SAE loaders need) and imports nothing from
interp_widgets.

    .venv-delphi/bin/python scripts/delphi_interop.py read CACHE TOKENIZER_DIR OUT.json
        Delphi's `LatentDataset` opens the cache folder CACHE (written by
        `iw.write_delphi_cache`) with the tokenizer in TOKENIZER_DIR, builds every latent's
        record (activating examples and random non-activating ones, its constructor and
        sampler), and OUT.json lists per hookpoint and latent: its per-token frequency, the
        largest activation among its examples, and the token ids and activations of its top
        example.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read(cache: Path, tokenizer_dir: Path, out: Path) -> None:
    from delphi.config import ConstructorConfig, SamplerConfig
    from delphi.latents import LatentDataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    dataset = LatentDataset(
        raw_dir=str(cache),
        sampler_cfg=SamplerConfig(n_examples_train=5, n_examples_test=5, n_quantiles=2,
                                  train_type="top"),
        constructor_cfg=ConstructorConfig(example_ctx_len=16, min_examples=1,
                                          n_non_activating=2, non_activating_source="random"),
        tokenizer=tokenizer)
    records: dict[str, dict[str, dict]] = {}
    for record in dataset:
        top = max(record.examples, key=lambda e: float(e.max_activation))
        records.setdefault(record.latent.module_name, {})[str(record.latent.latent_index)] = {
            "frequency": float(record.per_token_frequency),
            "max_activation": float(top.max_activation),
            "n_examples": len(record.examples),
            "top_tokens": [int(t) for t in top.tokens.tolist()],
            "top_activations": [float(a) for a in top.activations.tolist()],
        }
    out.write_text(json.dumps(records))
    print(json.dumps({m: len(r) for m, r in records.items()}))


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "read":
        sys.exit(__doc__)
    read(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
