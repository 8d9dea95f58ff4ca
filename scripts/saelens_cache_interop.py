"""SAELens's side of the cached-activations checks. Runs in the SAELens virtualenv
(.venv-saelens, made by `scripts/setup.sh --test`) and imports nothing from interp_widgets.

    .venv-saelens/bin/python scripts/saelens_cache_interop.py read CACHE OUT.safetensors
        SAELens's `ActivationsStore` opens the cache folder CACHE (written by
        `iw.cache_activations`) as its `cached_activations_path`, for each hook column, and reads
        every context through `get_raw_llm_batch`; OUT holds, per hook, the activations it read
        ("{hook}") [n_tokens, d_in] and their token ids ("{hook}.token_ids").

    .venv-saelens/bin/python scripts/saelens_cache_interop.py write MODEL_DIR TOKENS OUT_DIR
        SAELens's `CacheActivationsRunner` caches the activations of the Hugging Face model in
        MODEL_DIR (loaded as `AutoModelForCausalLM`, offline) at module `transformer.h.0` over
        the token rows in TOKENS (safetensors, "tokens" [n, ctx]) into OUT_DIR/cache, unshuffled.
        Beside it, OUT_DIR/expected.safetensors holds what a plain PyTorch forward hook on that
        module gives for the same rows ("acts" [n, ctx, d], "tokens"): the independent reference
        for `tests/test_interchange_saelens.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MODULE = "transformer.h.0"


def read(cache: Path, out: Path) -> None:
    import datasets
    from sae_lens.training.activations_store import ActivationsStore

    info = datasets.load_from_disk(str(cache)).features
    hooks = {k: v.shape for k, v in info.items() if k != "token_ids"}
    tensors = {}
    for hook, (ctx, d_in) in hooks.items():
        store = ActivationsStore(
            model=None, dataset=None, streaming=False, hook_name=hook, hook_head_index=None,
            context_size=ctx, d_in=d_in, n_batches_in_buffer=2, total_training_tokens=10**9,
            store_batch_size_prompts=1, train_batch_size_tokens=ctx, prepend_bos=True,
            normalize_activations="none", device=torch.device("cpu"), dtype="float32",
            cached_activations_path=str(cache))
        acts, toks = [], []
        while True:
            try:
                a, t = store.get_raw_llm_batch(raise_on_epoch_end=True)
            except StopIteration:
                break
            acts.append(a)
            toks.append(t)
        tensors[hook] = torch.cat(acts).contiguous()
        tensors[f"{hook}.token_ids"] = torch.cat(toks).contiguous()
    save_file(tensors, str(out))
    print(json.dumps({h: list(tensors[h].shape) for h in hooks}))


def write(model_dir: Path, tokens_file: Path, out: Path) -> None:
    from datasets import Dataset
    from sae_lens import CacheActivationsRunner, CacheActivationsRunnerConfig
    from transformers import AutoModelForCausalLM

    tokens = load_file(str(tokens_file))["tokens"].long()  # [n, ctx]
    n, ctx = tokens.shape
    hf = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    d = hf.config.n_embd
    cfg = CacheActivationsRunnerConfig(
        dataset_path="local-tokens", model_name=str(model_dir),
        model_class_name="AutoModelForCausalLM", model_batch_size=4, hook_name=MODULE, d_in=d,
        training_tokens=n * ctx, context_size=ctx, new_cached_activations_path=str(out / "cache"),
        shuffle=False, dtype="float32", device="cpu", streaming=False, prepend_bos=False,
        buffer_size_gb=n * ctx * d * 4 / 2 / 1e9)
    CacheActivationsRunner(cfg, override_dataset=Dataset.from_dict(
        {"input_ids": tokens.tolist()})).run()

    import datasets

    cached = datasets.load_from_disk(str(out / "cache")).with_format("torch")
    rows = cached[:]["token_ids"].long()  # [n_cached, ctx]
    got: list[torch.Tensor] = []
    handle = dict(hf.named_modules())[MODULE].register_forward_hook(
        lambda mod, inp, output: got.append(output[0] if isinstance(output, tuple) else output))
    with torch.no_grad():
        hf(rows)
    handle.remove()
    save_file({"acts": got[0].contiguous(), "tokens": rows.contiguous()},
              str(out / "expected.safetensors"))
    print(json.dumps({"contexts": len(rows), "context_size": ctx, "d_in": d}))


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("read", "write"):
        sys.exit(__doc__)
    if sys.argv[1] == "read" and len(sys.argv) == 4:
        read(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1] == "write" and len(sys.argv) == 5:
        write(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit(__doc__)
