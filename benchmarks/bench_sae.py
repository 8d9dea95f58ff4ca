"""SAE training and encoding speed, with quality beside it: `train_sae` against a plain PyTorch
TopK loop and against SAELens's trainer (in its own virtualenv), on the same toy activations.

Toy data: planted unit-norm features in superposition, a few active per sample
(`interp_widgets.sae.toy`); quality is final MSE, fraction of variance explained, L0 and the
recovery of the planted features (mean best decoder cosine), all measured here on held-out
samples by the same code. Target (issue 5): at least 1.5x SAELens's samples/s at equal or better
MSE and recovery.

SAELens pins transformer-lens < 4, so it runs in a separate virtualenv at `--saelens-venv`
(default .venv-saelens, which `scripts/setup.sh --test` makes); `--setup-saelens` creates it
(pip install sae-lens). Without it the SAELens row says it was not measured.

Run: `.venv/bin/python benchmarks/bench_sae.py [--setup-saelens]` (writes its README section).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from interp_widgets.sae import load_sae, train_sae
from interp_widgets.sae.toy import planted_activations, planted_features, recovery

from _common import interleaved_medians, machine, publish

SAELENS_VERSION = "6.54.0"
RUNNER = Path(__file__).with_name("_saelens_trainer.py")
REPO = Path(__file__).resolve().parents[1]


def plain_topk(x: torch.Tensor, d_sae: int, k: int, samples: int, batch: int, lr: float):
    """The reference: a plain PyTorch TopK SAE loop (MSE, Adam, unit-norm decoder rows, b_dec at
    the mean; no AuxK, no scaling, no schedule). Returns (W_enc, b_enc, W_dec, b_dec)."""
    d_in = x.shape[1]
    W_dec = torch.randn(d_sae, d_in)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    W_enc = W_dec.T.clone().requires_grad_()
    W_dec.requires_grad_()
    b_enc = torch.zeros(d_sae, requires_grad=True)
    b_dec = x.mean(0).clone().requires_grad_()
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=lr)
    g = torch.Generator().manual_seed(0)
    done = 0
    while done < samples:
        for xb in x[torch.randperm(len(x), generator=g)].split(batch)[: len(x) // batch]:
            pre = (xb - b_dec) @ W_enc + b_enc
            vals, idx = pre.topk(k, dim=-1)
            acts = torch.zeros_like(pre).scatter(-1, idx, vals.relu())
            loss = ((acts @ W_dec + b_dec - xb) ** 2).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                W_dec /= W_dec.norm(dim=-1, keepdim=True)
            done += len(xb)
            if done >= samples:
                break
    return W_enc.detach(), b_enc.detach(), W_dec.detach(), b_dec.detach()


def plain_encode(params, x: torch.Tensor, k: int) -> torch.Tensor:
    W_enc, b_enc, _, b_dec = params
    pre = (x - b_dec) @ W_enc + b_enc
    vals, idx = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, idx, vals.relu())


def quality(encode, decode, W_dec: torch.Tensor, x: torch.Tensor, feats: torch.Tensor) -> dict:
    """MSE (summed over dims, mean over samples), FVE, L0 and recovery on held-out x."""
    with torch.no_grad():
        acts = encode(x)
        err = (decode(acts) - x).pow(2).sum(-1)
    var = (x - x.mean(0)).pow(2).sum(-1)
    return {"mse": float(err.mean()), "fve": float(1 - err.sum() / var.sum()),
            "l0": float((acts != 0).sum(-1).float().mean()), "recovery": recovery(W_dec, feats)}


def ensure_saelens_venv(venv: Path, setup: bool) -> tuple[Path | None, str]:
    """(python of the SAELens venv or None, a note saying why not)."""
    py = venv / "bin" / "python"
    if py.exists():
        return py, ""
    if not setup:
        return None, (f"SAELens not measured: no virtualenv at {venv} (run with --setup-saelens "
                      f"to create it with sae-lens=={SAELENS_VERSION}).")
    print(f"creating {venv} with sae-lens=={SAELENS_VERSION} (a few minutes)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"torch=={torch.__version__}",
                    f"sae-lens=={SAELENS_VERSION}"], check=True)
    return py, ""


def run_saelens(py: Path, acts: Path, out: Path, args) -> dict:
    cmd = [str(py), str(RUNNER), str(acts), str(out), str(args.k), str(args.d_sae),
           str(args.batch), str(args.samples), "1", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"The SAELens run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--d-in", type=int, default=64)
    parser.add_argument("--d-sae", type=int, default=512)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--active", type=float, default=4.0)
    parser.add_argument("--samples", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--saelens-venv", type=Path, default=REPO / ".venv-saelens")
    parser.add_argument("--setup-saelens", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    feats = planted_features(args.features, args.d_in, seed=0)
    train = planted_activations(feats, 200_000, active=args.active, seed=0)
    evals = planted_activations(feats, 20_000, active=args.active, seed=1)
    lr = min(2e-3, 2e-4 * math.sqrt(16384 / args.d_sae))  # train_sae's default
    made: dict = {}

    def ours():
        made["ours"] = train_sae(train, d_sae=args.d_sae, k=args.k, total_samples=args.samples,
                                 batch_size=args.batch, progress=False, device="cpu")

    def plain():
        made["plain"] = plain_topk(train, args.d_sae, args.k, args.samples, args.batch, lr)

    py, note = ensure_saelens_venv(args.saelens_venv, args.setup_saelens)
    fns = {"ours": ours, "plain": plain}
    theirs: dict = {"fit": [], "encode": []}
    with tempfile.TemporaryDirectory() as tmp:
        acts = Path(tmp) / "acts.safetensors"
        save_file({"train": train.contiguous(), "eval": evals.contiguous()}, str(acts))
        if py is not None:
            def saelens():  # one SAELens fit per round, timed inside its own process
                res = run_saelens(py, acts, Path(tmp), args)
                theirs["fit"] += res["fit_seconds"]
                theirs["encode"] += res["encode_seconds"]
                theirs["version"] = res["version"]

            fns["saelens"] = saelens
        t_fit = interleaved_medians(fns, repeats=args.repeats, warmup=0)
        sae, ref = made["ours"], made["plain"]
        t_enc = interleaved_medians({"ours": lambda: sae.encode(evals),
                                     "plain": lambda: plain_encode(ref, evals, args.k)},
                                    repeats=20)
        rows = {
            "ours": (t_fit["ours"], t_enc["ours"],
                     quality(sae.encode, sae.decode, sae.W_dec.detach(), evals, feats)),
            "plain": (t_fit["plain"], t_enc["plain"],
                      quality(lambda x: plain_encode(ref, x, args.k),
                              lambda a: a @ ref[2] + ref[3], ref[2], evals, feats)),
        }
        version = theirs.get("version", "")
        if py is not None:
            saved = load_sae(Path(tmp) / "sae")  # read through our loader: a format check too
            rows["saelens"] = (statistics.median(theirs["fit"]),
                               statistics.median(theirs["encode"]),
                               quality(saved.encode, saved.decode,
                                       saved.feature_directions().detach(), evals, feats))
    body = report(rows, args, note, version, len(evals))
    publish("bench_sae", body, write=not args.no_write)


def report(rows: dict, args, note: str, version: str, n_eval: int) -> str:
    names = {"ours": "`iw.train_sae` (TopK, AuxK, Gao et al.)",
             "plain": "plain PyTorch TopK loop (reference)",
             "saelens": f"SAELens {version} `SAETrainer`, TopK defaults"}
    lines = [
        "## SAE training and encoding (`benchmarks/bench_sae.py`)",
        "",
        f"Toy activations: {args.features} planted unit-norm features in {args.d_in} dimensions, "
        f"{args.active:g} active per sample on average; TopK SAE with {args.d_sae} latents, "
        f"k = {args.k}, batch {args.batch}, {args.samples:,} training samples; quality on "
        f"{n_eval:,} held-out samples. {args.threads} torch thread(s); {machine()}. Training "
        f"time: median of {args.repeats} interleaved rounds (each round trains all three; SAELens "
        "runs in its own virtualenv and its `fit()` is timed inside that process).",
        "",
        "| trainer | train samples/s | encode samples/s | MSE | FVE | L0 | recovery |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, (fit_s, enc_s, q) in rows.items():
        lines.append(f"| {names[key]} | {args.samples / fit_s:,.0f} | {n_eval / enc_s:,.0f} | "
                     f"{q['mse']:.4f} | {q['fve']:.3f} | {q['l0']:.2f} | {q['recovery']:.3f} |")
    lines.append("")
    if "saelens" in rows:
        ours, theirs = rows["ours"], rows["saelens"]
        speed = theirs[0] / ours[0]
        met = (speed >= 1.5 and ours[2]["mse"] <= theirs[2]["mse"]
               and ours[2]["recovery"] >= theirs[2]["recovery"])
        lines.append(f"Target (>= 1.5x SAELens's samples/s at equal or better MSE and recovery): "
                     f"**{'met' if met else 'NOT met'}** ({speed:.2f}x).")
    else:
        lines.append(note)
    lines.append("Recovery: mean over the planted features of the best cosine with a decoder "
                 "row (1.0 = all found).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
