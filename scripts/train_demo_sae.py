"""Train the demo SAE: a TopK SAE on the demo model's residual stream, shipped in
interp_widgets/demo/sae/ and loaded by `iw.demo.load_sae()`.

Activations stream from the model over `iw.demo.corpus` documents through `train_sae`'s shuffling
buffer; the SAE is then evaluated on held-out documents (another corpus seed) beside PCA and ICA
baselines at the same L0, and the figures are written to interp_widgets/demo/sae/README.md.

Run: `.venv/bin/python scripts/train_demo_sae.py` (a few minutes on 2 CPU threads).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import interp_widgets as iw
from interp_widgets.analysis.dictionaries import fit_dictionary
from interp_widgets.sae import evaluate_sae, evaluation_table, train_sae

OUT = Path(__file__).resolve().parents[1] / "interp_widgets" / "demo" / "sae"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo", help="'demo' or a Hugging Face folder")
    parser.add_argument("--layer", type=int, default=None,
                        help="residual stream before this block (default: the middle layer)")
    parser.add_argument("--expansion", type=int, default=8, help="d_sae / d_model")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--samples", type=int, default=1_500_000)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--docs", type=int, default=4000, help="training documents")
    parser.add_argument("--eval-docs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = iw.load_model(args.model, device="cpu")
    layer = args.layer if args.layer is not None else model.cfg.n_layers // 2
    hook = f"blocks.{layer}.hook_resid_pre"
    d_sae = args.expansion * model.cfg.d_model
    docs = iw.demo.corpus(args.docs, seed=1000 + args.seed)
    held_out = iw.demo.corpus(args.eval_docs, seed=2000 + args.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as ckpt:
        sae = train_sae((model, docs), hook=hook, arch="topk", d_sae=d_sae, k=args.k,
                        total_samples=args.samples, batch_size=args.batch, seed=args.seed,
                        device="cpu", checkpoint_dir=ckpt)
    minutes = (time.perf_counter() - t0) / 60
    sae.metadata["model_name"] = "demo" if args.model == "demo" else model.name
    sae.save(args.out)
    evals = {f"TopK SAE (d_sae {d_sae}, k {args.k})": evaluate_sae(model, sae, held_out)}
    for kind in ("pca", "ica"):
        base = fit_dictionary(model, docs[:500], hook, kind, model.cfg.d_model, k=args.k,
                              seed=args.seed)
        evals[f"{kind.upper()} ({model.cfg.d_model} components, top {args.k})"] = \
            evaluate_sae(model, base, held_out)
    table = evaluation_table(evals)
    print(table.to_string())
    write_readme(args, hook, d_sae, minutes, table, evals)


def write_readme(args, hook: str, d_sae: int, minutes: float, table, evals) -> None:
    cols = ["l0", "fve", "ce_clean", "ce_spliced", "ce_zero", "ce_recovered", "delta_loss",
            "dead_fraction", "dense_fraction"]
    lines = ["| dictionary | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in table[cols].iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    sae_eval = next(iter(evals.values()))
    live = sae_eval.density[sae_eval.density > 0].double().log10().numpy()
    counts, edges = np.histogram(live, bins=np.arange(np.floor(live.min()), 0.01, 0.5))
    hist = ", ".join(f"[{lo:.1f}, {hi:.1f}): {int(c)}"
                     for lo, hi, c in zip(edges[:-1], edges[1:], counts))
    dead = int((sae_eval.density == 0).sum())
    text = f"""# The demo SAE

A TopK SAE on the demo model's `{hook}` (d_in {d_sae // args.expansion},
d_sae {d_sae}, k {args.k}), trained by `scripts/train_demo_sae.py` on {args.samples:,} token
activations streamed from {args.docs:,} `iw.demo.corpus` documents (BOS position left out),
in {minutes:.1f} min on {args.threads} CPU threads. Load it with `iw.demo.load_sae()`.

Evaluation on {args.eval_docs} held-out documents ({sae_eval.n_tokens:,} tokens; `evaluate_sae`,
splicing every position but BOS). PCA and ICA baselines keep the top {args.k} codes per token,
so all three rows have the same L0:

{chr(10).join(lines)}

Feature density histogram of the SAE (log10 firing frequency: number of latents), with
{dead} latents that never fired: {hist}.

Regenerate: `.venv/bin/python scripts/train_demo_sae.py` (command: `{" ".join(
    ["scripts/train_demo_sae.py"] + [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                    if k != "out" and v is not None])}`).
"""
    tmp = args.out / ".README.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, args.out / "README.md")


if __name__ == "__main__":
    main()
