"""`iw.scan` (the unit engine, streaming, every unit of a basis) against a bare forward pass over
the same token batches, and against the tutorial approach: cache every activation, then sort.

Rows: the neurons of an early and of the last layer, the demo SAE, each also against a forward
that stops at the same hook (what the scan's forward costs, so the rest is the engine's fold);
two Ray workers against one process, and the merge of the two shards.
Targets (issues 4, 17): the last layer's neurons at most 1.3x the bare forward, the demo SAE at
most 1.4x; peak memory the same at two corpus sizes. Memory is the RSS high-water mark of a
fresh subprocess per run, reset after loading the model and the corpus, minus the RSS at that
point (so it counts what the run adds).
Run: `.venv/bin/python benchmarks/bench_scan.py [--tokens 200000]` (writes its README section).
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
from interp_widgets.analysis.corpus import iter_corpus, layer_activations

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
        scan = iw.scan(model, iw.neurons(model, args.layer), docs, k=args.k, batch_size=BATCH,
                       progress=False)
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


def ray_figures(model, sae, docs, args) -> list[str]:
    """Lines on two Ray workers vs one process (the demo SAE scan) and the merge time."""
    try:
        import ray
    except ImportError:
        return ["Ray: not installed (pip install 'interp-widgets[ray]'), so not measured."]
    t0 = time.perf_counter()
    try:
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2,
                 log_to_driver=False)
    except Exception as err:  # noqa: BLE001 - say why in the README instead
        return [f"Ray: the local cluster did not start here ({type(err).__name__}: "
                f"{str(err)[:160]}), so the 2-worker figures are missing."]
    started = time.perf_counter() - t0
    kw = dict(k=args.k, batch_size=BATCH, progress=False)
    try:
        iw.scan(model, sae, docs[:BATCH * 2], cluster="ray", n_workers=2, **kw)  # workers load
        t0 = time.perf_counter()
        iw.scan(model, sae, docs, cluster="ray", n_workers=2, **kw)
        two = time.perf_counter() - t0
    finally:
        ray.shutdown()
    t0 = time.perf_counter()
    one = iw.scan(model, sae, docs, **kw)
    single = time.perf_counter() - t0
    shards = [iw.scan(model, sae, docs, shard=i, n_shards=2, **kw) for i in range(2)]
    t0 = time.perf_counter()
    iw.UnitScan.merge(shards)
    merge = time.perf_counter() - t0
    assert one.n_tokens == sum(s.n_tokens for s in shards)
    return [f"Ray, the demo SAE scan: one process {single:.1f} s; two Ray workers (local "
            f"cluster, 2 CPUs, started in {started:.1f} s, workers warm) {two:.1f} s: "
            f"{single / two:.2f}x; merging the two shards {merge * 1000:.0f} ms."]


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
    parser.add_argument("--no-ray", dest="ray", action="store_false",
                        help="skip the Ray rows (2 workers vs 1 process, merge time)")
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

    sae = iw.demo.load_sae()

    def scan(basis, correlations=None):
        return lambda: iw.scan(model, basis, docs, k=args.k, batch_size=BATCH, progress=False,
                               correlations=correlations)

    def to_hook(hook: str):
        def run():
            for b in iter_corpus(model, docs, BATCH):
                layer_activations(model, [r for _, r in b.rows], hook)
        return run

    early, final = iw.neurons(model, args.layer), iw.neurons(model, last)
    runs = {"bare": lambda: bare_forward(model, prepared), "early": scan(early),
            "last": scan(final), "last_nocorr": scan(final, False),
            "last_hook": to_hook(final.hook), "sae": scan(sae), "sae_hook": to_hook(sae.hook_name),
            "naive": lambda: naive_top_k(model, docs, last, args.k)}
    t = interleaved_medians(runs, repeats=args.repeats, warmup=1)
    print(json.dumps({"seconds": t}), file=sys.stderr, flush=True)  # kept if a later step dies
    ray_rows = ray_figures(model, sae, docs, args) if args.ray else [
        "Ray: not run (--no-ray)."]
    mem = {(m, n): measure(args, m, n) for m in ("scan", "naive")
           for n in (args.small, args.tokens)}
    ratio = {k: v / t["bare"] for k, v in t.items()}
    s_small, s_big = mem["scan", args.small], mem["scan", args.tokens]
    n_small, n_big = mem["naive", args.small], mem["naive", args.tokens]
    flat = abs(s_big["added_mb"] - s_small["added_mb"]) <= max(50.0, 0.1 * s_small["added_mb"])
    row = "| {} | {:.1f} s | {:.2f}x |"
    lines = [
        "## Corpus scan: `iw.scan` vs a bare forward and vs cache-then-sort "
        "(`benchmarks/bench_scan.py`)",
        "",
        f"Model `{args.model}` ({model.cfg.n_layers} layers, all {model.cfg.d_mlp} neurons of a "
        f"layer; the demo SAE, {sae.d_sae} latents at `{sae.hook_name}`; k={args.k}); "
        f"{len(docs):,} documents of {DOC_TOKENS} tokens cut from "
        f"`iw.demo.corpus` = {n_tokens:,} tokens ({padded:,} with BOS), batches of {BATCH} "
        f"documents, {args.threads} torch thread(s); median of {args.repeats} interleaved runs "
        f"after one warm-up; {machine()}.",
        "",
        "| what | time | vs bare forward |",
        "|---|---|---|",
        row.format("bare forward of the whole model over the same batches", t["bare"], 1.0),
        row.format(f"`iw.scan(model, iw.neurons(model, {args.layer}), ...)` (the forward stops "
                   "at its hook)", t["early"], ratio["early"]),
        row.format(f"`iw.scan`, neurons of the last layer {last} (stops at its hook: no "
                   "unembedding)", t["last"], ratio["last"]),
        row.format("`iw.scan`, last layer, `correlations=False`", t["last_nocorr"],
                   ratio["last_nocorr"]),
        row.format("forward to the last layer's `mlp.hook_post` only (no scan)", t["last_hook"],
                   ratio["last_hook"]),
        row.format(f"`iw.scan(model, iw.demo.load_sae(), ...)` ({sae.d_sae} latents)", t["sae"],
                   ratio["sae"]),
        row.format(f"forward to `{sae.hook_name}` only (no scan)", t["sae_hook"],
                   ratio["sae_hook"]),
        row.format("naive: cache every activation of the last layer, then `topk`", t["naive"],
                   ratio["naive"]),
        "",
        "`iw.scan` keeps per unit the top-k and bottom-k with contexts, bucket samples, a "
        "histogram, mean/std/density, a uniform random sample of positions shared by all units "
        "and (by default, up to 4,096 units) sum x x^T for correlations; the naive approach gives "
        "only the top-k values. The engine's own cost is the scan's time minus the forward to "
        f"its hook: {t['last'] - t['last_hook']:.1f} s for {model.cfg.d_mlp} neurons, "
        f"{t['sae'] - t['sae_hook']:.1f} s for the SAE.",
        "",
        *ray_rows,
        "",
        "Memory added on top of the loaded model (RSS high-water mark of a fresh process, "
        f"neurons of layer {args.layer}):",
        "",
        "| corpus | `iw.scan` | scan state (saved tensors) | naive cache-then-sort |",
        "|---|---|---|---|",
        f"| {args.small:,} tokens | {s_small['added_mb']:.0f} MB | {s_small['state_mb']:.1f} MB | "
        f"{n_small['added_mb']:.0f} MB |",
        f"| {args.tokens:,} tokens | {s_big['added_mb']:.0f} MB | {s_big['state_mb']:.1f} MB | "
        f"{n_big['added_mb']:.0f} MB |",
        "",
        f"Targets: the last layer's neurons at most 1.3x the bare forward: "
        f"**{'met' if ratio['last'] <= 1.3 else 'NOT met'}** ({ratio['last']:.2f}x; "
        f"{ratio['last_nocorr']:.2f}x without correlation sums), {ratio['early']:.2f}x for layer "
        f"{args.layer}; the demo SAE at most 1.4x: **{'met' if ratio['sae'] <= 1.4 else 'NOT met'}"
        f"** ({ratio['sae']:.2f}x); memory flat in corpus size: "
        f"**{'met' if flat else 'NOT met'}** ({s_small['added_mb']:.0f} MB vs "
        f"{s_big['added_mb']:.0f} MB), while the naive approach grows with the corpus "
        f"({n_small['added_mb']:.0f} MB -> {n_big['added_mb']:.0f} MB).",
    ]
    publish("bench_scan", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
