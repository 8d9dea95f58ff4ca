"""`Model.run` with a names filter against a bare forward pass of the bridge on the same batch.

Target (issue: core): at most 1.10x the bare forward's time, and cache memory only for the hooks
asked for. Run: `.venv/bin/python benchmarks/bench_run.py` (writes its section of README.md).
"""

from __future__ import annotations

import argparse

import torch

import interp_widgets as iw

from _common import interleaved_medians, machine, publish


def cache_bytes(cache) -> int:
    return sum(t.numel() * t.element_size() for t in dict(cache).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = iw.load_model("demo", device="cpu")
    bridge = model.bridge
    # demo-corpus tokens cut into equal rows: no padding, so both sides do the same work
    need, ids = args.batch * args.seq, []
    for doc in iw.demo.corpus(10 * args.batch, seed=1):
        ids.append(model.to_tokens(doc, prepend_bos=False)[0])
        if sum(len(i) for i in ids) >= need:
            break
    tokens = torch.cat(ids)[:need].reshape(args.batch, args.seq)
    hook = f"blocks.{model.cfg.n_layers - 1}.mlp.hook_post"

    def bare():
        with torch.no_grad():
            return bridge(tokens)

    def ours():
        return model.run(tokens, names=[hook])

    def tl_filtered():
        with torch.no_grad():
            return bridge.run_with_cache(tokens, names_filter=[hook])

    t = interleaved_medians({"bare": bare, "ours": ours, "tl": tl_filtered}, repeats=args.repeats)
    run = ours()
    assert list(run.cache) == [hook]
    with torch.no_grad():
        _, full = bridge.run_with_cache(tokens)
    ratio = t["ours"] / t["bare"]
    lines = [
        "## Model.run vs a bare forward pass (`benchmarks/bench_run.py`)",
        "",
        f"Demo model, batch {tokens.shape[0]} x {tokens.shape[1]} tokens, one hook (`{hook}`), "
        f"median of {args.repeats} interleaved runs; {machine()}.",
        "",
        "| what | median time | vs bare forward | cache |",
        "|---|---|---|---|",
        f"| bare `bridge(tokens)` | {t['bare'] * 1e3:.1f} ms | 1.00x | none |",
        f"| `model.run(tokens, names=[hook])` | {t['ours'] * 1e3:.1f} ms | {ratio:.2f}x | "
        f"{cache_bytes(run.cache) / 1e6:.2f} MB (1 hook) |",
        f"| `bridge.run_with_cache(names_filter=[hook])` | {t['tl'] * 1e3:.1f} ms | "
        f"{t['tl'] / t['bare']:.2f}x | same |",
        f"| unfiltered `bridge.run_with_cache` (for scale) | | | {cache_bytes(full) / 1e6:.1f} MB "
        f"({len(dict(full))} entries) |",
        "",
        f"Target: at most 1.10x the bare forward: **{'met' if ratio <= 1.10 else 'NOT met'}** "
        f"({ratio:.2f}x). The cache holds only the hook asked for.",
    ]
    publish("bench_run", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
