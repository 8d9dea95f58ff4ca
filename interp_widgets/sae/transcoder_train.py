"""`train_transcoders` and `evaluate_transcoders`: per-layer and cross-layer transcoders trained
on a model's MLP inputs and outputs, with the SAE trainer's machinery (`sae.train`: the shuffling
buffer, the input scaling folded into the saved weights, the geometric-median bias start, the
learning-rate decay, the training loop with checkpoints, resume and Ctrl-C).

Loss: the sum over layers of each MLP output's normalized MSE, ||y_l - y_hat_l||^2 /
||y_l - mean(y_l)||^2 (so every layer counts alike), plus for JumpReLU an L0 penalty
`l0_coefficient * sum_l L0_l` through the straight-through estimators of Rajamanoharan et al.
2024 ("Jumping Ahead"; rectangle kernel of width `bandwidth`). TopK has no penalty: k fixes L0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..model import Model, resolve_device
from .activations import quiet_truncation, shuffled
from .evaluate import SAEEvaluation, _Accumulator
from .splice import hook_widths
from .train import STATE_FILE, _JumpReLU, _loop, _prepend, _Step, geometric_median
from .transcoder import Transcoders
from .transcoder_splice import transcoders_spliced


@dataclass
class TranscoderTrainConfig:
    """Every setting of one transcoder training run (checked on resume)."""

    kind: str
    arch: str
    n_layers: int
    d_in: int
    d_out: int
    d_transcoder: int
    k: int | None
    l0_coefficient: float | None
    bandwidth: float
    skip: bool
    total_samples: int
    batch_size: int
    lr: float
    seed: int
    dead_after: int
    input_hook: str
    output_hook: str
    model_name: str | None = None


class _TranscoderTrainer:
    """One run's state (transcoders in scaled units, optimizer, counters); the interface
    `sae.train._loop` drives: cfg, samples, step, train_step, dead_fraction, save."""

    def __init__(self, cfg: TranscoderTrainConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self.tcs = Transcoders(cfg.n_layers, cfg.d_in, cfg.d_out, cfg.d_transcoder,
                               kind=cfg.kind, activation=cfg.arch, k=cfg.k, skip=cfg.skip,
                               input_hook=cfg.input_hook, output_hook=cfg.output_hook,
                               model_name=cfg.model_name, device=device, seed=cfg.seed)
        params = list(self.tcs.parameters())
        if cfg.arch == "jumprelu":  # trained as log(threshold), so it stays positive
            self.log_theta = torch.nn.Parameter(torch.full_like(self.tcs.threshold, math.log(0.1)))
            params = [p for p in params if p is not self.tcs.threshold] + [self.log_theta]
        self.opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), eps=6.25e-10)
        self.samples, self.step = 0, 0
        self.scale_in = torch.ones(cfg.n_layers, device=device)
        self.scale_out = torch.ones(cfg.n_layers, device=device)
        self.since_fired = torch.zeros(cfg.n_layers, cfg.d_transcoder, dtype=torch.long,
                                       device=device)

    def split(self, xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows [n, L * (d_in + d_out)] -> (x [n, L, d_in], y [n, L, d_out]), raw units."""
        c = self.cfg
        n_in = c.n_layers * c.d_in
        return xy[:, :n_in].view(-1, c.n_layers, c.d_in), xy[:, n_in:].view(-1, c.n_layers,
                                                                            c.d_out)

    def initialize(self, xy: torch.Tensor) -> None:
        """Per-layer input and output scales (E|x| = sqrt(d)) and b_dec from a first sample."""
        x, y = self.split(xy)
        self.scale_in = math.sqrt(self.cfg.d_in) / x.norm(dim=-1).mean(0).clamp_min(1e-12)
        self.scale_out = math.sqrt(self.cfg.d_out) / y.norm(dim=-1).mean(0).clamp_min(1e-12)
        with torch.no_grad():
            for layer in range(self.cfg.n_layers):
                self.tcs.b_dec[layer] = geometric_median(y[:, layer] * self.scale_out[layer])

    def lr_at(self, samples: int) -> float:
        return self.cfg.lr * min(1.0, (1.0 - samples / self.cfg.total_samples) / 0.2)

    def _acts(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(acts [B, L, d_tc], differentiable L0 per row and layer [B, L])."""
        c = self.cfg
        if c.arch == "topk":
            vals, idx = pre.topk(c.k, dim=-1, sorted=False)
            acts = torch.zeros_like(pre).scatter(-1, idx, vals.relu())
            return acts, (acts > 0).sum(-1).float()
        theta = self.log_theta.exp()  # [L, d_tc]
        acts = _JumpReLU.apply(pre, theta, c.bandwidth)
        return acts, _Step.apply(pre, theta, c.bandwidth).sum(-1)

    def train_step(self, xy: torch.Tensor) -> dict[str, torch.Tensor]:
        tcs, c = self.tcs, self.cfg
        x, y = self.split(xy)
        x = x * self.scale_in[:, None]
        y = y * self.scale_out[:, None]
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.samples)
        pre = torch.einsum("bli,lit->blt", x, tcs.W_enc) + tcs.b_enc  # [B, L, d_tc]
        acts, l0 = self._acts(pre)
        loss = pre.new_zeros(())
        err = var = 0.0
        for t in range(c.n_layers):
            y_hat = tcs.decode(t, [acts[:, s] for s in range(c.n_layers)]) + \
                tcs.skip_term(t, x[:, t])
            mse = (y_hat - y[:, t]).pow(2).sum(-1).mean()
            v = (y[:, t] - y[:, t].mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12)
            loss = loss + mse / v
            err, var = err + mse.detach(), var + v.detach()
        if c.arch == "jumprelu":
            loss = loss + c.l0_coefficient * l0.sum(-1).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        fired = (acts > 0).any(0)  # [L, d_tc]
        self.since_fired += len(x)
        self.since_fired[fired] = 0
        self.samples += len(x)
        self.step += 1
        return {"loss": loss.detach(), "fve": 1 - err / var, "l0": l0.detach().mean()}

    def dead_fraction(self) -> float:
        return float((self.since_fired >= self.cfg.dead_after).float().mean())

    def export(self) -> Transcoders:
        """A copy in raw units: the input and output scales folded into the weights."""
        c, s_in, s_out = self.cfg, self.scale_in, self.scale_out
        out = Transcoders(c.n_layers, c.d_in, c.d_out, c.d_transcoder, kind=c.kind,
                          activation=c.arch, k=c.k, skip=c.skip, input_hook=c.input_hook,
                          output_hook=c.output_hook, model_name=c.model_name, device=self.device)
        with torch.no_grad():
            for name, p in self.tcs.named_parameters():
                out.get_parameter(name).copy_(p)
            if c.arch == "jumprelu":
                out.threshold.copy_(self.log_theta.exp())
            out.W_enc.mul_(s_in[:, None, None])
            for s in range(c.n_layers):
                targets = [t for t in range(c.n_layers) if s in self.tcs.sources(t)]
                out.W_dec[s].div_(s_out[targets][None, :, None])
            out.b_dec.div_(s_out[:, None])
            if out.W_skip is not None:
                out.W_skip.mul_((s_in / s_out)[:, None, None])
        return out

    def save(self, folder: Path) -> None:
        """The exported set (circuit-tracer layout) plus trainer_state.pt to resume from."""
        self.export().save(folder)
        state = {"config": asdict(self.cfg), "tcs": self.tcs.state_dict(),
                 "optimizer": self.opt.state_dict(), "samples": self.samples, "step": self.step,
                 "scale_in": self.scale_in.cpu(), "scale_out": self.scale_out.cpu(),
                 "since_fired": self.since_fired.cpu(),
                 "log_theta": getattr(self, "log_theta", None)}
        tmp = folder / f".{STATE_FILE}.tmp"
        torch.save(state, tmp)
        tmp.replace(folder / STATE_FILE)

    def load(self, folder: Path) -> None:
        state = torch.load(folder / STATE_FILE, map_location=self.device, weights_only=False)
        saved = {k: v for k, v in state["config"].items() if k != "total_samples"}
        now = {k: v for k, v in asdict(self.cfg).items() if k != "total_samples"}
        diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
        if diff:
            detail = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"The checkpoint in {folder} was trained with other settings "
                             f"({detail}). Use the same settings, or another checkpoint_dir.")
        self.tcs.load_state_dict(state["tcs"])
        if state.get("log_theta") is not None:
            with torch.no_grad():
                self.log_theta.copy_(state["log_theta"])
        self.opt.load_state_dict(state["optimizer"])
        self.samples, self.step = state["samples"], state["step"]
        self.scale_in = state["scale_in"].to(self.device)
        self.scale_out = state["scale_out"].to(self.device)
        self.since_fired = state["since_fired"].to(self.device)


def _io_rows(model: Model, docs: Sequence[str], in_hooks: Sequence[str],
             out_hooks: Sequence[str], skip_bos: bool) -> torch.Tensor:
    """Tensor[n_tokens, L * (d_in + d_out)]: every layer's MLP input then output, per token."""
    with quiet_truncation():
        run = model.run(list(docs), names=list(in_hooks) + list(out_hooks))
    keep = run.attention_mask.bool()
    if skip_bos:
        keep[:, 0] = False
    return torch.cat([run.cache[h][keep].float() for h in (*in_hooks, *out_hooks)], dim=-1)


def train_transcoders(model: Model, corpus: Iterable[str], *, kind: str = "per_layer",
                      arch: str = "topk", d_transcoder: int, k: int | None = None,
                      l0_coefficient: float = 2e-3, bandwidth: float = 0.05, skip: bool = False,
                      total_samples: int, batch_size: int = 1024, lr: float | None = None,
                      input_hook: str = "ln2.hook_normalized", output_hook: str = "hook_mlp_out",
                      seed: int = 0, device: str | torch.device | None = None,
                      dead_after: int | None = None, checkpoint_dir: str | Path | None = None,
                      checkpoint_every: int | None = None, resume: bool = True,
                      progress: bool = True, buffer_size: int | None = None,
                      model_batch_size: int = 16, skip_bos: bool = True) -> Transcoders:
    """Train transcoders for every MLP of `model` on `corpus` (a list of documents) and return
    them (on `device`, the best available by default).

    kind: "per_layer" (one transcoder per MLP) or "clt" (cross-layer: layer l's features write
        to every MLP output l' >= l). arch: "topk" (needs k) or "jumprelu" (L0 penalty
        `l0_coefficient`, straight-through kernel width `bandwidth`, in the scaled units where
        E|x| = sqrt(d)). skip: add a linear skip connection W_skip [d_out, d_in] per layer.
    input_hook / output_hook: relative to `blocks.{l}.` (default: the normalized MLP input,
        `ln2.hook_normalized`, and `hook_mlp_out`).
    total_samples: tokens seen (each gives every layer's pair); lr default 2e-4 *
        sqrt(16384 / d_transcoder), at most 2e-3; dead_after default max(total / 20, 10 batches).
    checkpoint_dir / resume / Ctrl-C as `train_sae`."""
    if kind not in ("per_layer", "clt"):
        raise ValueError(f"kind must be 'per_layer' or 'clt', not {kind!r}.")
    if arch not in ("topk", "jumprelu"):
        raise ValueError(f"train_transcoders trains arch='topk' or 'jumprelu', not {arch!r}.")
    if arch == "topk" and not k:
        raise ValueError("TopK transcoders need k, the number of active features per token per "
                         "layer (e.g. k=16).")
    if total_samples < batch_size:
        raise ValueError(f"total_samples ({total_samples}) must be at least batch_size "
                         f"({batch_size}).")
    docs = list(corpus)
    if not docs:
        raise ValueError("The corpus is empty: give at least one document.")
    dev = resolve_device(device)
    torch.manual_seed(seed)
    n_layers = model.cfg.n_layers
    in_hooks = [f"blocks.{layer}.{input_hook}" for layer in range(n_layers)]
    out_hooks = [f"blocks.{layer}.{output_hook}" for layer in range(n_layers)]
    model.check_hook_names(in_hooks + out_hooks)
    gen = torch.Generator().manual_seed(seed)

    def chunks() -> Iterator[torch.Tensor]:
        while True:  # epochs over the corpus, each in a fresh order
            order = torch.randperm(len(docs), generator=gen).tolist()
            for i in range(0, len(order), model_batch_size):
                yield _io_rows(model, [docs[j] for j in order[i:i + model_batch_size]],
                               in_hooks, out_hooks, skip_bos)

    batches = shuffled(chunks(), batch_size, buffer_size or 16 * batch_size, generator=gen)
    first = next(batches).to(dev)
    widths = hook_widths(model, [in_hooks[0], out_hooks[0]])
    d_in, d_out = widths[in_hooks[0]][-1], widths[out_hooks[0]][-1]
    cfg = TranscoderTrainConfig(
        kind=kind, arch=arch, n_layers=n_layers, d_in=d_in, d_out=d_out,
        d_transcoder=d_transcoder, k=k if arch == "topk" else None,
        l0_coefficient=l0_coefficient if arch == "jumprelu" else None, bandwidth=bandwidth,
        skip=skip, total_samples=total_samples, batch_size=batch_size,
        lr=lr if lr is not None else min(2e-3, 2e-4 * math.sqrt(16384 / d_transcoder)),
        seed=seed, dead_after=dead_after or max(total_samples // 20, 10 * batch_size),
        input_hook=input_hook, output_hook=output_hook, model_name=model.name)
    trainer = _TranscoderTrainer(cfg, dev)
    folder = Path(checkpoint_dir).expanduser() if checkpoint_dir is not None else None
    if folder is not None and resume and (folder / STATE_FILE).exists():
        trainer.load(folder)
    else:
        trainer.initialize(first)
    every = checkpoint_every or max(batch_size, total_samples // 10)
    _loop(trainer, _prepend(first, (b.to(dev) for b in batches)), folder, every, progress)
    return trainer.export()


# ---- evaluation ---------------------------------------------------------------------------------


def evaluate_transcoders(model: Model, tcs: Transcoders, corpus: Iterable[str], *,
                         batch_size: int = 16, skip_bos: bool = True, dense_threshold: float = 0.1,
                         bins: int = 40, progress: bool = True) -> dict[str, SAEEvaluation]:
    """Evaluate transcoders like SAEs, on `corpus`'s real tokens (BOS left out with `skip_bos`).

    Returns {"layer 0": ..., ..., "all": ...} of `SAEEvaluation`: for "layer l", FVE of MLP
    output l predicted from the real MLP inputs, L0 and density of layer l's features, and the
    CE loss with MLP l alone replaced by its reconstruction (`ce_spliced`) vs zero-ablated
    (`ce_zero`); for "all", every MLP replaced at once (features computed from the replaced
    model's own MLP inputs) vs every MLP zero-ablated, FVE and L0 pooled over layers (L0 summed
    over layers per token). `evaluation_table(result)` makes a DataFrame."""
    from tqdm.auto import tqdm

    tcs.check_model(model)
    docs = list(corpus)
    if not docs:
        raise ValueError("The corpus is empty: give at least one document.")
    L = tcs.n_layers
    ins = [tcs.input_hook_name(layer) for layer in range(L)]
    outs = [tcs.output_hook_name(layer) for layer in range(L)]
    accs = {**{f"layer {layer}": _Accumulator(tcs.d_transcoder) for layer in range(L)},
            "all": _Accumulator(L * tcs.d_transcoder)}
    for i in tqdm(range(0, len(docs), batch_size), disable=not progress,
                  desc="evaluate transcoders"):
        chunk = docs[i:i + batch_size]
        with quiet_truncation(), torch.no_grad():
            clean = model.run(chunk, names=ins + outs)
            keep = clean.attention_mask.bool()
            if skip_bos:
                keep[:, 0] = False
            xs = [clean.cache[h][keep].float() for h in ins]
            ys = [clean.cache[h][keep].float() for h in outs]
            codes = [tcs.encode(layer, x) for layer, x in enumerate(xs)]
            recon = [tcs.decode(t, codes) + tcs.skip_term(t, xs[t]) for t in range(L)]
            for t in range(L):
                with transcoders_spliced(model, tcs, layers=[t], skip_bos=skip_bos):
                    spliced = model.run(chunk)
                zero = _zero_mlps(model, chunk, [outs[t]], skip_bos)
                accs[f"layer {t}"].add(ys[t], recon[t], codes[t], clean.loss, spliced.loss,
                                       zero.loss)
            with transcoders_spliced(model, tcs, skip_bos=skip_bos):
                spliced = model.run(chunk)
            zero = _zero_mlps(model, chunk, outs, skip_bos)
            accs["all"].add(torch.cat(ys, -1), torch.cat(recon, -1), torch.cat(codes, -1),
                            clean.loss, spliced.loss, zero.loss)
    return {name: acc.result(dense_threshold, bins) for name, acc in accs.items()}


def _zero_mlps(model: Model, docs: Sequence[str], hooks: Sequence[str], skip_bos: bool) -> Any:
    def zero(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
        out = torch.zeros_like(x)
        if skip_bos and x.ndim >= 3:
            out[:, 0] = x[:, 0]
        return out

    with model.bridge.hooks(fwd_hooks=[(h, zero) for h in hooks]):
        return model.run(list(docs))
