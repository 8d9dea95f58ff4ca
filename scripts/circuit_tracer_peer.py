"""circuit-tracer's side of the attribution-graph checks. Runs in the circuit-tracer virtualenv
(.venv-circuit-tracer, made by `scripts/setup.sh --test`) and imports nothing from interp_widgets.

    .venv-circuit-tracer/bin/python scripts/circuit_tracer_peer.py MODEL_DIR TC_DIR TOKENS OUT
        [--batch-size N] [--repeat R]

MODEL_DIR: a Hugging Face GPT-2 folder (the demo model); TC_DIR: transcoders in circuit-tracer's
layout (a `transcoder_set` of layer_{l}.safetensors or a `cross_layer_transcoder` of
W_enc_{l} / W_dec_{l}.safetensors, told apart by config.yaml's model_kind); TOKENS: token ids,
comma-separated, starting with BOS. OUT.safetensors gets circuit-tracer's graph (adjacency,
active_features [n, 3] (layer, pos, feature), activation_values, logit_ids, logit_probs) and
`prune_graph`'s masks at node_threshold 0.8 / edge_threshold 0.98 (node_mask, edge_mask,
cumulative_scores); OUT.json the timings (`attribute` alone, each of R runs) and counts.

How the model and transcoders are loaded, and why:
- `HookedTransformer.from_pretrained` accepts only names in TransformerLens's official list and
  fetches their configs from the hub, and the demo model (3 layers, width 128) is none of them;
  TransformerLens's `get_pretrained_model_config` / `get_pretrained_state_dict` do read a local
  HF folder, so the script builds the HookedTransformer from those.
- circuit-tracer's `from_pretrained_and_transcoders` loads with fold_ln, center_writing_weights
  and center_unembed all off; interp_widgets (TransformerLens 4's `enable_compatibility_mode`)
  folds and centres, and the demo transcoders read `ln2.hook_normalized` / write
  `hook_mlp_out` in those coordinates. So the weights get HookedTransformer's default processing
  (fold_ln, center_writing_weights, center_unembed, fold_value_biases) and then the
  replacement is configured by circuit-tracer's own `_configure_replacement_model` (the step
  its `from_pretrained_and_transcoders` runs after loading).
- The demo transcoders are TopK (k of d_transcoder, then ReLU). circuit-tracer's loaders read
  TopK files as plain ReLU (`load_relu_transcoder`, `load_clt` know only relu / jump_relu) and
  its own `TopK` keeps negative top-k values, so the script gives circuit-tracer's transcoder
  objects the activation the files were trained with (`topk_relu` below).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file


def topk_relu(k: int):
    def act(pre: torch.Tensor) -> torch.Tensor:
        vals, idx = pre.topk(k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())
    return act


def load_transcoders(tc_dir: Path):
    from circuit_tracer.transcoder.cross_layer_transcoder import load_clt
    from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set

    cfg = yaml.safe_load((tc_dir / "config.yaml").read_text())
    ours = cfg.get("interp_widgets") or {}
    hooks = {"feature_input_hook": cfg["feature_input_hook"],
             "feature_output_hook": cfg["feature_output_hook"]}
    if cfg["model_kind"] == "cross_layer_transcoder":
        tcs = load_clt(str(tc_dir), device=torch.device("cpu"), dtype=torch.float32,
                       lazy_decoder=False, lazy_encoder=False, scan=cfg.get("scan"), **hooks)
        modules = [tcs]
    else:
        paths = {int(p.stem.split("_")[1]): str(p) for p in tc_dir.glob("layer_*.safetensors")}
        tcs = load_transcoder_set(paths, scan=cfg.get("scan"), device=torch.device("cpu"),
                                  dtype=torch.float32, lazy_encoder=False, lazy_decoder=False,
                                  **hooks)
        modules = list(tcs)
    if ours.get("activation") == "topk":
        for m in modules:
            m.activation_function = topk_relu(int(ours["k"]))
    elif ours.get("activation") not in (None, "relu", "jumprelu"):
        raise SystemExit(f"unknown activation {ours.get('activation')!r} in {tc_dir}")
    return tcs


def load_model(model_dir: Path, tcs):
    from circuit_tracer.replacement_model.replacement_model_transformerlens import (
        TransformerLensReplacementModel,
    )
    from transformer_lens.loading_from_pretrained import (
        get_pretrained_model_config,
        get_pretrained_state_dict,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    with tempfile.TemporaryDirectory() as tmp:
        # TransformerLens 3's GPT-2 config conversion reads `n_ctx`, which config.json files
        # written by transformers 5 (the demo's) no longer hold: add it (= n_positions)
        hf_cfg = json.loads((model_dir / "config.json").read_text())
        hf_cfg.setdefault("n_ctx", hf_cfg["n_positions"])
        (Path(tmp) / "config.json").write_text(json.dumps(hf_cfg))
        cfg = get_pretrained_model_config(tmp, fold_ln=True, device="cpu", dtype=torch.float32)
        state = get_pretrained_state_dict(tmp, cfg, hf_model=hf, dtype=torch.float32)
    model = TransformerLensReplacementModel(cfg, tokenizer=tok, move_to_device=True)
    model.load_and_process_state_dict(state, fold_ln=True, center_writing_weights=True,
                                      center_unembed=True, fold_value_biases=True)
    model._configure_replacement_model(tcs)
    return model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("tc_dir", type=Path)
    ap.add_argument("tokens")
    ap.add_argument("out", type=Path)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from circuit_tracer import attribute
    from circuit_tracer.graph import prune_graph

    t0 = time.perf_counter()
    tcs = load_transcoders(a.tc_dir)
    model = load_model(a.model_dir, tcs)
    load_s = time.perf_counter() - t0
    tokens = torch.tensor([int(t) for t in a.tokens.split(",")])
    times = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        graph = attribute(tokens, model, batch_size=a.batch_size)
        times.append(time.perf_counter() - t)
    pr = prune_graph(graph, node_threshold=0.8, edge_threshold=0.98)
    with torch.no_grad():
        logits = model(tokens[None])[0, -1].float()
    save_file({
        "adjacency": graph.adjacency_matrix.float().contiguous(),
        "active_features": graph.active_features.long().contiguous(),
        "selected_features": graph.selected_features.long().contiguous(),
        "activation_values": graph.activation_values.float().contiguous(),
        "logit_ids": graph.logit_token_ids.long().contiguous(),
        "logit_probs": graph.logit_probabilities.float().contiguous(),
        "logits": logits.contiguous(),
        "node_mask": pr.node_mask.contiguous(),
        "edge_mask": pr.edge_mask.contiguous(),
        "cumulative_scores": pr.cumulative_scores.float().contiguous(),
    }, str(a.out.with_suffix(".safetensors")))
    info = {"load_s": load_s, "attribute_s": times, "n_nodes": int(graph.adjacency_matrix.shape[0]),
            "n_features": int(len(graph.selected_features)), "n_pos": int(graph.n_pos),
            "n_layers": int(graph.cfg.n_layers)}
    a.out.with_suffix(".json").write_text(json.dumps(info))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
