"""Dictionaries side by side in one run: torch FastICA vs scikit-learn's, streaming PCA/ICA memory
at two token counts (vs scikit-learn's in-memory fits), and planted-feature recovery of
overcomplete ICA beside an SAE's and complete ICA's.

Parts (all by default; `--parts ica,stream,toy`):
  ica:    Laplace sources [n, d] mixed by a random d x d matrix; `fit_fastica` and sklearn
          `FastICA` (logcosh, parallel, tol 1e-4, whiten="unit-variance") with `--threads`
          threads each; time and Amari distance to the true mixing.
  stream: the demo model's activations at `--hook`, cached once with `iw.cache_activations`,
          then each fit in a fresh subprocess over `--small` and `--tokens` tokens: peak RSS
          added by the fit (high-water mark reset after loading) and time. sklearn's PCA and
          FastICA get the same rows as one in-memory array.
  toy:    `--features` planted features in `--dims` dimensions (sae.toy), `--samples` samples:
          TopK SAE, complete FastICA, overcomplete ICA (RICA) with as many units as features.
Run: `.venv/bin/python benchmarks/bench_dictionaries.py` (writes its sections of README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _common import machine, publish, reset_peak, rss_mb

HOOK = "blocks.1.hook_resid_pre"


def _threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch

    torch.set_num_threads(n)


# ---- FastICA: ours vs scikit-learn ----------------------------------------------------------

def part_ica(args) -> str:
    import numpy as np
    import torch
    from sklearn.decomposition import FastICA
    from threadpoolctl import threadpool_limits

    from interp_widgets.analysis.fastica import amari_distance, fit_fastica

    rng = np.random.default_rng(0)
    n, d = args.n_ica, args.ica_dims
    mixing = rng.normal(size=(d, d))
    x = rng.laplace(size=(n, d)) @ mixing.T  # float64, [n, d]
    xt = torch.from_numpy(x).float()
    rows = []
    t0 = time.perf_counter()
    ours = fit_fastica(xt, d, max_iter=400)
    t_ours = time.perf_counter() - t0
    rows.append(("`fit_fastica` (torch, float32 matmuls, CPU)", t_ours, ours.n_iter_,
                 amari_distance(ours.components_, mixing)))
    with threadpool_limits(args.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        sk = FastICA(d, whiten="unit-variance", random_state=0, max_iter=400).fit(x)
        t_sk = time.perf_counter() - t0
    rows.append((f"scikit-learn {__import__('sklearn').__version__} `FastICA`", t_sk,
                 sk.n_iter_, amari_distance(sk.components_, mixing)))
    between = amari_distance(ours.components_, np.linalg.pinv(sk.components_))
    speed, ratio = t_sk / t_ours, rows[0][3] / rows[1][3]
    table = "\n".join(f"| {name} | {t:.1f} | {it} | {a:.5f} |" for name, t, it, a in rows)
    loaded = "" if n >= 1_000_000 else (f" n = {n:,} instead of the target's 1,000,000 "
                                        "(the machine was shared; see the command).")
    return f"""## FastICA: torch vs scikit-learn (`benchmarks/bench_dictionaries.py --parts ica`)

{n:,} samples x {d} dims of Laplace sources, mixed by a random {d} x {d} matrix; {d}
components, logcosh, parallel, tol 1e-4; {args.threads} threads each.{loaded}

| fit | seconds | iterations | Amari distance to the true mixing |
|---|---:|---:|---:|
{table}

Speed: ours {speed:.2f}x scikit-learn's (target >= 1: **{'met' if speed >= 1 else 'missed'}**).
Amari distance: ours / scikit-learn's = {ratio:.3f} (target <= 1.5: \
**{'met' if ratio <= 1.5 else 'missed'}**). Amari distance between the two unmixings: {between:.2e}.
Command: `.venv/bin/python benchmarks/bench_dictionaries.py --parts ica --n-ica {n} \
--threads {args.threads}` ({machine()})."""


# ---- streaming from the demo model ----------------------------------------------------------

def child(args) -> None:
    """One fit over the first `args.tokens` cached tokens, in this fresh process: JSON line."""
    _threads(args.threads)
    import numpy as np

    import interp_widgets as iw

    cache = iw.load_cached_activations(args.cache)
    model = iw.load_model("demo", device="cpu")
    rows = None
    if args.child.startswith("sklearn"):
        from interp_widgets.analysis.fastica import passes

        parts, n = [], 0
        for c in passes(cache, hook=HOOK)():
            parts.append(c.numpy())
            n += len(c)
            if n >= args.tokens:
                break
        reset_peak()
        base = rss_mb("VmRSS")
        t0 = time.perf_counter()
        rows = np.concatenate(parts)[:args.tokens].astype(np.float64)  # as sklearn wants
        del parts
        from sklearn.decomposition import PCA, FastICA

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if args.child == "sklearn_pca":
                PCA(args.components).fit(rows)
            else:
                FastICA(args.components, whiten="unit-variance", random_state=0,
                        max_iter=200).fit(rows)
    else:
        reset_peak()
        base = rss_mb("VmRSS")
        t0 = time.perf_counter()
        kind = {"pca": "pca", "ica": "ica"}[args.child]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            iw.analysis.fit_dictionary(model, cache, HOOK, kind, args.components,
                                       max_tokens=args.tokens)
    seconds = time.perf_counter() - t0
    print(json.dumps({"mode": args.child, "tokens": args.tokens, "seconds": seconds,
                      "added_mb": rss_mb() - base}))


def measure(args, mode: str, tokens: int, cache: str) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--tokens", str(tokens), "--cache", cache,
           "--threads", str(args.threads), "--components", str(args.components)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         cwd=Path(__file__).parent).stdout
    return json.loads(out.strip().splitlines()[-1])


def part_stream(args) -> str:
    _threads(args.threads)
    import interp_widgets as iw

    model = iw.load_model("demo", device="cpu")
    big = args.tokens
    docs = iw.demo.corpus(max(200, big // 60), seed=5)
    with tempfile.TemporaryDirectory(prefix="iw-bench-dict-") as tmp:
        t0 = time.perf_counter()
        cache = iw.cache_activations(model, docs, HOOK, Path(tmp) / "cache",
                                     max_tokens=big + big // 10, progress=False)
        t_cache = time.perf_counter() - t0
        if cache.n_tokens < big:
            raise SystemExit(f"the corpus gave {cache.n_tokens} tokens; need {big}")
        res = {(m, n): measure(args, m, n, str(cache.path))
               for m in ("pca", "ica", "sklearn_pca", "sklearn_ica")
               for n in (args.small, big)}
    names = {"pca": "streaming PCA (`fit_dictionary`, kind pca)",
             "ica": "torch FastICA (`fit_dictionary`, kind ica)",
             "sklearn_pca": "scikit-learn `PCA` (rows in memory, float64)",
             "sklearn_ica": "scikit-learn `FastICA` (rows in memory, float64)"}
    lines = []
    for m, name in names.items():
        a, b = res[(m, args.small)], res[(m, big)]
        per_m = b["seconds"] / big * 1e6
        lines.append(f"| {name} | {a['added_mb']:.0f} | {b['added_mb']:.0f} | "
                     f"{b['added_mb'] / max(a['added_mb'], 1e-9):.2f} | {a['seconds']:.1f} | "
                     f"{b['seconds']:.1f} | {per_m:.0f} |")
    ratios = {m: res[(m, big)]["added_mb"] / max(res[(m, args.small)]["added_mb"], 1e-9)
              for m in ("pca", "ica")}
    ok = all(r <= 1.3 for r in ratios.values())
    cache_rate = cache.n_tokens / t_cache
    small_k, big_k = f"{args.small // 1000}k", f"{big // 1000}k"
    header = (f"| fit | MB added, {small_k} | MB added, {big_k} | ratio | s, {small_k} | "
              f"s, {big_k} | s per 1M tokens (from the {big_k} run) |")
    return f"""## Streaming PCA / ICA from the demo model \
(`benchmarks/bench_dictionaries.py --parts stream`)

The demo model's `{HOOK}` (d = {model.cfg.d_model}) over {args.small:,} and {big:,} tokens,
{args.components} components; activations cached once with `iw.cache_activations`
({cache.n_tokens:,} tokens in {t_cache:.0f} s, {cache_rate:,.0f} tokens/s, so caching costs
{1e6 / cache_rate:.0f} s per million tokens), then each fit in a fresh process reading the cache
from disk. Memory: RSS high-water mark added by the fit (reset after loading). {args.threads}
threads.

{header}
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(lines)}

Target (ours within 1.3x between the two sizes): **{'met' if ok else 'missed'}** (PCA
{ratios['pca']:.2f}x, ICA {ratios['ica']:.2f}x). scikit-learn's memory grows with the rows it
holds. Seconds per million tokens are extrapolated from the {big // 1000}k-token run (ICA's
time grows with its iteration count, which depends on the data); 10M tokens were not run here.
Command: `.venv/bin/python benchmarks/bench_dictionaries.py --parts stream --small {args.small} \
--tokens {big} --components {args.components} --threads {args.threads}` ({machine()})."""


# ---- toy superposition: overcomplete ICA vs SAE vs complete ICA -----------------------------

def part_toy(args) -> str:
    _threads(args.threads)
    from interp_widgets.sae import toy_recovery

    kinds = ("TopK SAE", "ReLU-L1 SAE", "ICA", "overcomplete ICA")
    t0 = time.perf_counter()
    rec = toy_recovery(n_features=args.features, d=args.dims, n_samples=args.samples,
                       batch_size=1024, lr=1e-2 if args.samples < 1_000_000 else 3e-3,
                       kinds=kinds)
    seconds = time.perf_counter() - t0
    rows = "\n".join(f"| {k} | {rec[k]:.3f} |" for k in kinds)
    return f"""## Planted features in superposition (`benchmarks/bench_dictionaries.py --parts toy`)

{args.features} planted unit features in {args.dims} dimensions, 4 active per sample, magnitudes
uniform in [0, 1] (`sae.toy`); every method sees the same {args.samples:,} samples. SAEs and
overcomplete ICA have {args.features} units (one epoch, batch 1024, Adam), TopK k = 4;
complete ICA has {args.dims} components, all it can. Recovery: mean over the planted features of
the best cosine with a learned direction (1.0 = all found). All fits {seconds:.0f} s.

| dictionary | recovery |
|---|---:|
{rows}

Command: `.venv/bin/python benchmarks/bench_dictionaries.py --parts toy --samples {args.samples} \
--threads {args.threads}` ({machine()})."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="ica,stream,toy")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ica", type=int, default=1_000_000)
    parser.add_argument("--ica-dims", type=int, default=128)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--tokens", type=int, default=400_000)
    parser.add_argument("--components", type=int, default=64)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["pca", "ica", "sklearn_pca", "sklearn_ica"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    _threads(args.threads)
    for part in args.parts.split(","):
        body = {"ica": part_ica, "stream": part_stream, "toy": part_toy}[part](args)
        publish(f"bench_dictionaries_{part}", body, write=not args.no_write)


if __name__ == "__main__":
    main()
