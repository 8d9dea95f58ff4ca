"""Integrated gradients' completeness gap on every architecture of the test matrix
(tests/archs.py: small random HF models loaded through iw.load_model), default settings (pad
baseline, adaptive steps) against the zeroed-embedding baseline at 32 steps.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/bench_ig_gap.py [--archs llama qwen2]

A Markdown table (relative gap |gap| / |target - baseline| and the steps used), printed and
written to benchmarks/README.md (section bench_ig_gap) unless --no-write."""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

import archs  # noqa: E402

import interp_widgets as iw  # noqa: E402

from _common import machine, publish  # noqa: E402

PROMPT = "When Mary and John went to the store, John gave a drink to"
HEADER = """## Integrated gradients: completeness gap per architecture (`benchmarks/bench_ig_gap.py`)

Random models of the test matrix (`tests/archs.py`, 2 layers, d_model 64, weights drawn with
std 0.15; "x30": token embeddings multiplied by 30), prompt "{prompt}", target
`logit(' Mary') - logit(' John')`. Gap = |(target - baseline) - sum of attributions| /
|target - baseline|. Default: pad-token baseline, Gauss-Legendre steps doubled from 16 until the
gap is below 1%. Target: below 1% on every architecture.

| arch | embed scale | pad baseline, adaptive: gap | steps | zero baseline, 32 steps: gap |
|---|---:|---:|---:|---:|
"""  # noqa: E501


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="*", default=list(archs.ARCHS))
    parser.add_argument("--scales", nargs="*", type=float, default=[1.0, 30.0],
                        help="token-embedding multipliers to try")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows, worst = [], 0.0
    for name in args.archs:
        for scale in args.scales:
            with tempfile.TemporaryDirectory() as tmp:
                _, model = archs.load(name, tmp, initializer_range=0.15, embed_scale=scale)
                ig = iw.input_attribution(model, PROMPT, " Mary", " John")
                zero = iw.input_attribution(model, PROMPT, " Mary", " John", baseline="zero",
                                            steps=32)
            rows.append(f"| {name} | x{scale:g} | {ig.relative_gap:.1e} | {ig.steps} | "
                        f"{zero.relative_gap:.1%} |")
            worst = max(worst, ig.relative_gap)
            print(rows[-1], flush=True)
    body = (HEADER.format(prompt=PROMPT) + "\n".join(rows) + "\n\n"
            + f"Largest default gap: {worst:.1e} ({'met' if worst < 0.01 else 'missed'}). "
            + f"Command: `python benchmarks/bench_ig_gap.py` ({machine()}).\n")
    publish("bench_ig_gap", body, write=not args.no_write)


if __name__ == "__main__":
    main()
