"""`scan_neurons` (streaming, every neuron of a layer) against a bare forward pass over the same
token batches, and against the tutorial approach: cache every activation, then sort.

Targets (issue 4): at most 1.3x the bare forward's time over >= 200k tokens; peak memory the same
at two corpus sizes. Memory is the RSS high-water mark of a fresh subprocess per run, reset after
loading the model and the corpus, minus the RSS at that point (so it counts what the run adds).
Run: `.venv/bin/python benchmarks/bench_scan.py` (writes its section of README.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

import interp_widgets as iw
from interp_widgets.analysis.corpus import iter_corpus, scan_neurons

from _common import interleaved_medians, machine, publish, reset_peak, rss_mb

BATCH = 32
DOC_TOKENS = 128


def corpus_ids(model, tokens: int, seed: int, length: int = DOC_TOKENS) -> list[list[int]]:
    """Documents of `length` token ids cut from the demo corpus, `tokens` tokens in all (BOS
    excluded). Equal lengths make every batch the same shape, so peak memory can be compared
    across corpus sizes."""
    docs: list[list[int]] = []
    stream: list[int] = []
    n = 0
    while len(docs) * length < tokens:
        for d in iw.demo.corpus(256, seed=seed * 1000 + n):
            stream += model.tokenizer(" " + d, add_special_tokens=False)["input_ids"]
        while len(stream) >= length and len(docs) * length < tokens:
            docs.append(stream[:length])
            stream = stream[length:]
        n += 1
    return docs


def batches(model, docs) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The padded (tokens, mask) batches scan_neurons runs, for the bare forward."""
    out = []
    for b in iter_corpus(model, docs, BATCH):
        rows = [r for _, r in b.rows]
        tokens = model.to_tokens(rows, prepend_bos=False)  # [batch, pos], right-padded
        lengths = torch.tensor([len(r) for r in rows])
        padded = bool((lengths < tokens.shape[1]).any())
        mask = (torch.arange(tokens.shape[1]) < lengths[:, None]).long() if padded else None
        out.append((tokens, mask))
    return out


def bare_forward(model, prepared) -> None:
    with torch.no_grad():
        for tokens, mask in prepared:
            model.bridge(tokens, **({} if mask is None else {"attention_mask": mask}))


def naive_top_k(model, docs, layer: int, k: int) -> torch.Tensor:
    """The tutorial way: run everything, keep every activation, concatenate, sort."""
    hook = f"blocks.{layer}.mlp.hook_post"
    kept = []
    for b in iter_corpus(model, docs, BATCH):
        run = model.run([r for _, r in b.rows], names=[hook], prepend_bos=False)
        real = run.attention_mask.bool()
        real[:, 0] = False
        kept.append(run.cache[hook][real])  # [tokens, d_mlp]
    return torch.cat(kept).topk(k, dim=0).values  # [k, d_mlp]


def child(args) -> None:
    """One measured run in this (fresh) process; prints a JSON line."""
    torch.set_num_threads(args.threads)
    model = iw.load_model(args.model, device="cpu")
    docs = corpus_ids(model, args.tokens, seed=1)
    reset_peak()
    base = rss_mb("VmRSS")
    t0 = time.perf_counter()
    if args.child == "scan":
        scan = scan_neurons(model, docs, args.layer, k=args.k, batch_size=BATCH, progress=False)
        state = sum(t.numel() * t.element_size() for t in scan._tensors().values()) / 1e6
    else:
        naive_top_k(model, docs, args.layer, args.k)
        state = float("nan")
    seconds = time.perf_counter() - t0
    print(json.dumps({"mode": args.child, "tokens": args.tokens, "seconds": seconds,
                      "base_mb": base, "peak_mb": rss_mb(), "added_mb": rss_mb() - base,
                      "state_mb": state}))


def measure(args, mode: str, tokens: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--tokens", str(tokens), "--model",
           args.model, "--layer", str(args.layer), "--k", str(args.k), "--threads",
           str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         cwd=Path(__file__).parent).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--layer", type=int, default=1, help="an early layer (scans stop there)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=50_000, help="smaller corpus, for memory")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=["scan", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.child:
        return child(args)

    torch.set_num_threads(args.threads)
    model = iw.load_model(args.model, device="cpu")
    docs = corpus_ids(model, args.tokens, seed=1)
    n_tokens = sum(len(d) for d in docs)
    prepared = batches(model, docs)
    padded = sum(t.numel() for t, _ in prepared)
    last = model.cfg.n_layers - 1

    def scan(layer: int, correlations: bool = True):
        return lambda: scan_neurons(model, docs, layer, k=args.k, batch_size=BATCH,
                                    progress=False, correlations=correlations)

    runs = {"bare": lambda: bare_forward(model, prepared), "early": scan(args.layer),
            "last": scan(last), "last_nocorr": scan(last, False),
            "naive": lambda: naive_top_k(model, docs, last, args.k)}
    t = interleaved_medians(runs, repeats=args.repeats, warmup=1)
    mem = {(m, n): measure(args, m, n) for m in ("scan", "naive")
           for n in (args.small, args.tokens)}
    ratio = {k: v / t["bare"] for k, v in t.items()}
    s_small, s_big = mem["scan", args.small], mem["scan", args.tokens]
    n_small, n_big = mem["naive", args.small], mem["naive", args.tokens]
    flat = abs(s_big["added_mb"] - s_small["added_mb"]) <= max(50.0, 0.1 * s_small["added_mb"])
    row = "| {} | {:.1f} s | {:.2f}x |"
    lines = [
        "## Corpus scan: `scan_neurons` vs a bare forward and vs cache-then-sort "
        "(`benchmarks/bench_scan.py`)",
        "",
        f"Model `{args.model}` ({model.cfg.n_layers} layers, all {model.cfg.d_mlp} neurons of a "
        f"layer, k={args.k}); {len(docs):,} documents of {DOC_TOKENS} tokens cut from "
        f"`iw.demo.corpus` = {n_tokens:,} tokens ({padded:,} with BOS), batches of {BATCH} "
        f"documents, {args.threads} torch thread(s); median of {args.repeats} interleaved runs "
        f"after one warm-up; {machine()}.",
        "",
        "| what | time | vs bare forward |",
        "|---|---|---|",
        row.format("bare forward of the whole model over the same batches", t["bare"], 1.0),
        row.format(f"`scan_neurons`, layer {args.layer} (the forward stops at its hook)",
                   t["early"], ratio["early"]),
        row.format(f"`scan_neurons`, last layer {last} (stops at its hook: no unembedding)",
                   t["last"], ratio["last"]),
        row.format("`scan_neurons`, last layer, `correlations=False`", t["last_nocorr"],
                   ratio["last_nocorr"]),
        row.format("naive: cache every activation of the last layer, then `topk`", t["naive"],
                   ratio["naive"]),
        "",
        "`scan_neurons` keeps per neuron the top-k with contexts, bucket samples, a histogram, "
        "mean/std/density and (by default) sum x x^T for correlations; the naive approach gives "
        "only the top-k values.",
        "",
        "Memory added on top of the loaded model (RSS high-water mark of a fresh process, layer "
        f"{args.layer}):",
        "",
        "| corpus | `scan_neurons` | scan state (saved tensors) | naive cache-then-sort |",
        "|---|---|---|---|",
        f"| {args.small:,} tokens | {s_small['added_mb']:.0f} MB | {s_small['state_mb']:.1f} MB | "
        f"{n_small['added_mb']:.0f} MB |",
        f"| {args.tokens:,} tokens | {s_big['added_mb']:.0f} MB | {s_big['state_mb']:.1f} MB | "
        f"{n_big['added_mb']:.0f} MB |",
        "",
        f"Targets: at most 1.3x the bare forward: **{'met' if ratio['last'] <= 1.3 else 'NOT met'}"
        f"** for the last layer ({ratio['last']:.2f}x; {ratio['last_nocorr']:.2f}x without "
        f"correlation sums), {ratio['early']:.2f}x for layer {args.layer}; memory flat in corpus "
        f"size: **{'met' if flat else 'NOT met'}** ({s_small['added_mb']:.0f} MB vs "
        f"{s_big['added_mb']:.0f} MB), while the naive approach grows with the corpus "
        f"({n_small['added_mb']:.0f} MB -> {n_big['added_mb']:.0f} MB).",
    ]
    publish("bench_scan", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
