"""Train the demo transcoders: per-layer TopK transcoders and a cross-layer TopK transcoder on
the demo model's MLPs, shipped in interp_widgets/demo/transcoders/{per_layer,clt}/ and loaded by
`iw.demo.load_transcoders(kind)`.

MLP inputs (`ln2.hook_normalized`) and outputs (`hook_mlp_out`) stream from the model over
`iw.demo.corpus` documents; both sets are evaluated on held-out documents (another corpus seed)
and the figures are written to interp_widgets/demo/transcoders/README.md.

Run: `.venv/bin/python scripts/train_demo_transcoders.py` (a few minutes on 2 CPU threads).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

import interp_widgets as iw
from interp_widgets.sae import evaluate_transcoders, evaluation_table, train_transcoders

OUT = Path(__file__).resolve().parents[1] / "interp_widgets" / "demo" / "transcoders"
COLS = ["l0", "fve", "ce_clean", "ce_spliced", "ce_zero", "ce_recovered", "delta_loss",
        "dead_fraction", "dense_fraction"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-transcoder", type=int, default=512)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--samples", type=int, default=800_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--docs", type=int, default=3000, help="training documents")
    parser.add_argument("--eval-docs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kinds", default="per_layer,clt")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = iw.load_model("demo", device="cpu")
    docs = iw.demo.corpus(args.docs, seed=3000 + args.seed)
    held_out = iw.demo.corpus(args.eval_docs, seed=4000 + args.seed)
    sections = []
    for kind in args.kinds.split(","):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as ckpt:
            tcs = train_transcoders(model, docs, kind=kind, arch="topk",
                                    d_transcoder=args.d_transcoder, k=args.k,
                                    total_samples=args.samples, batch_size=args.batch,
                                    seed=args.seed, device="cpu", checkpoint_dir=ckpt)
        minutes = (time.perf_counter() - t0) / 60
        tcs.model_name = "demo"
        tcs.save(args.out / kind)
        table = evaluation_table(evaluate_transcoders(model, tcs, held_out))[COLS]
        print(kind, f"{minutes:.1f} min")
        print(table.to_string())
        sections.append((kind, minutes, table))
    write_readme(args, sections)


def write_readme(args, sections) -> None:
    parts = []
    for kind, minutes, table in sections:
        what = ("one TopK transcoder per MLP" if kind == "per_layer" else
                "a cross-layer TopK transcoder (layer l's features write to every MLP output "
                "l' >= l)")
        lines = ["| replaced | " + " | ".join(COLS) + " |", "|---" * (len(COLS) + 1) + "|"]
        for name, row in table.iterrows():
            lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
        parts.append(f"""## `{kind}`: {what}

d_transcoder {args.d_transcoder}, k {args.k} per layer, trained in {minutes:.1f} min.
Load with `iw.demo.load_transcoders("{kind}")`.

{chr(10).join(lines)}
""")
    text = f"""# The demo transcoders

Transcoders of the demo model's three MLPs (MLP input `blocks.l.ln2.hook_normalized` ->
MLP output `blocks.l.hook_mlp_out`), trained by `scripts/train_demo_transcoders.py` on
{args.samples:,} tokens streamed from {args.docs:,} `iw.demo.corpus` documents (BOS position
left out) on {args.threads} CPU threads of a shared machine. Files in circuit-tracer's layout
(`config.yaml`, `layer_{{l}}.safetensors` or `W_enc_{{l}}`/`W_dec_{{l}}.safetensors`).

Evaluation on {args.eval_docs} held-out documents (`iw.evaluate_transcoders`, every position
but BOS): row "layer l" replaces MLP l alone (FVE of that MLP's output, CE loss spliced vs that
MLP zero-ablated); row "all" replaces every MLP at once (L0 summed over layers; CE loss vs every
MLP zero-ablated).

{chr(10).join(parts)}
Regenerate: `.venv/bin/python scripts/train_demo_transcoders.py --d-transcoder
{args.d_transcoder} --k {args.k} --samples {args.samples} --batch {args.batch} --docs
{args.docs} --eval-docs {args.eval_docs} --threads {args.threads} --seed {args.seed}`.
"""
    tmp = args.out / ".README.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, args.out / "README.md")


if __name__ == "__main__":
    main()
