"""`train_sae`: TopK SAEs after Gao et al. 2024 and standard ReLU SAEs with a decoder-norm
weighted L1 penalty (Anthropic, April 2024 update).

TopK (Gao et al., "Scaling and evaluating sparse autoencoders"):
  - loss: normalized MSE, ||x - x_hat||^2 / ||x - mean(x)||^2, plus AuxK: the top k_aux
    (= d_in / 2) pre-activations among dead latents reconstruct the residual x - x_hat, weighted
    1/32; a latent is dead when it has not fired for `dead_after` samples;
  - the encoder starts as the decoder's transpose; decoder rows are kept unit-norm, and the
    gradient component parallel to each row is removed before every step;
  - b_dec starts at the geometric median of a sample of activations.
Standard: loss = ||x - x_hat||^2 + l1 * sum_i f_i |W_dec[i]| (l1 warmed up over 5% of training).
JumpReLU (Rajamanoharan et al. 2024, "Jumping Ahead"): acts = pre * (pre > threshold), loss =
||x - x_hat||^2 + l0 * sum_i H(pre_i - threshold_i) (l0 warmed up over 5% of training); the
threshold learns through straight-through estimators with a rectangle kernel of width
`bandwidth` (the step's derivative taken as a pulse of that width), thresholds start at 0.01.
All: inputs scaled so that E|x| = sqrt(d_in) during training (the scale is folded into the saved
weights); Adam; the learning rate decays linearly to 0 over the last 20% of training.

Written by hand because SAELens (the kept library for this) cannot be imported next to
TransformerLens 4; the loop is small, and `benchmarks/bench_sae.py` compares it with SAELens's.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..model import Model, resolve_device
from .activations import model_activations, shuffled
from .io import save_sae
from .sae import SAE

STATE_FILE = "trainer_state.pt"
_DEFAULT_SPARSITY = {"standard": 3.0, "jumprelu": 0.5}


@dataclass
class TrainConfig:
    """Every setting of one training run (saved with checkpoints, checked on resume)."""

    arch: str
    d_in: int
    d_sae: int
    k: int | None
    l1_coefficient: float | None
    total_samples: int
    batch_size: int
    lr: float
    seed: int
    auxk_coefficient: float
    dead_after: int
    hook: str | None = None
    model_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def geometric_median(x: torch.Tensor, *, iters: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Tensor[d]: the point minimizing the summed distance to the rows of x [n, d] (Weiszfeld's
    algorithm; no kept library has one for torch tensors)."""
    y = x.mean(dim=0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=-1).clamp_min(1e-8)
        y_new = (w[:, None] * x).sum(dim=0) / w.sum()
        if (y_new - y).norm() <= tol * (y.norm() + 1e-12):
            return y_new
        y = y_new
    return y


def _source_batches(source: Any, hook: str | None, batch_size: int, buffer_size: int,
                    seed: int, model_batch_size: int, skip_bos: bool,
                    device: torch.device) -> tuple[Iterator[torch.Tensor], int, str | None]:
    """(endless iterator of Tensor[batch_size, d_in] on `device`, d_in, model name or None)."""
    gen = torch.Generator().manual_seed(seed)
    if isinstance(source, torch.Tensor):
        if source.ndim != 2 or len(source) < batch_size:
            raise ValueError(f"A tensor source must be [n, d_in] with n >= batch_size "
                             f"({batch_size}); got shape {list(source.shape)}.")
        data = source.to(device)

        def epochs() -> Iterator[torch.Tensor]:
            while True:
                perm = torch.randperm(len(data), generator=gen).to(device)
                yield from data[perm].split(batch_size)[: len(data) // batch_size]

        return epochs(), source.shape[1], None
    is_folder = isinstance(source, (str, os.PathLike)) and Path(source).expanduser().is_dir()
    if is_folder or type(source).__name__ == "CachedActivations":
        from ..interchange.saelens_cache import CachedActivations, load_cached_activations

        cache = source if isinstance(source, CachedActivations) else \
            load_cached_activations(source)
        column = cache.column(hook)

        def cached_chunks() -> Iterator[torch.Tensor]:
            while True:  # epochs over the cache, its blocks of contexts in a fresh order each
                yield from cache.chunks(column, contexts=64, skip_bos=skip_bos, generator=gen)

        it = shuffled(cached_chunks(), batch_size, buffer_size, generator=gen)
        first = next(it)
        return _prepend(first.to(device), (b.to(device) for b in it)), first.shape[1], None
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], Model):
        model, corpus = source
        if hook is None:
            raise ValueError("Training on (model, corpus) needs hook=..., e.g. "
                             "hook='blocks.1.hook_resid_pre'.")
        model.check_hook_names([hook])
        docs = list(corpus)
        if not docs:
            raise ValueError("The corpus is empty: give at least one document.")

        def chunks() -> Iterator[torch.Tensor]:
            while True:  # epochs over the corpus, in a fresh order each time
                order = torch.randperm(len(docs), generator=gen).tolist()
                for acts in model_activations(model, (docs[i] for i in order), hook,
                                              batch_size=model_batch_size, skip_bos=skip_bos):
                    yield acts.float()

        it = shuffled(chunks(), batch_size, buffer_size, generator=gen)
        first = next(it)
        return _prepend(first.to(device), (b.to(device) for b in it)), first.shape[1], model.name
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
        reiterable = iter(source) is not source

        def chunks() -> Iterator[torch.Tensor]:
            while True:
                n = 0
                for b in source:
                    n += 1
                    yield torch.as_tensor(b).float().flatten(0, -2)
                if not reiterable or n == 0:
                    return

        it = shuffled(chunks(), batch_size, buffer_size, generator=gen)
        first = next(it, None)
        if first is None:
            raise ValueError(f"The batches gave fewer than batch_size = {batch_size} rows.")
        return _prepend(first.to(device), (b.to(device) for b in it)), first.shape[1], None
    got = (f"{str(source)!r}, which is no folder" if isinstance(source, (str, os.PathLike))
           else type(source).__name__)
    raise TypeError("source must be a tensor [n, d_in], an iterable of such batches, "
                    f"(model, corpus), or a folder of SAELens cached activations; got {got}.")


def _prepend(first: torch.Tensor, rest: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    yield first
    yield from rest


class _Trainer:
    """One training run's state: SAE (in scaled units), optimizer, counters."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        init_norm = 1.0 if cfg.arch == "topk" else 0.1
        self.sae = SAE(cfg.d_in, cfg.d_sae, arch=cfg.arch, k=cfg.k, hook_name=cfg.hook,
                       model_name=cfg.model_name, device=device, seed=cfg.seed)
        with torch.no_grad():
            self.sae.W_dec.mul_(init_norm)
            self.sae.W_enc.copy_(self.sae.W_dec.T)
            if cfg.arch == "jumprelu":
                self.sae.threshold.fill_(0.01)
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999),
                                    eps=6.25e-10)
        self.samples, self.step, self.scale = 0, 0, 1.0
        self.since_fired = torch.zeros(cfg.d_sae, dtype=torch.long, device=device)

    def initialize(self, x: torch.Tensor) -> None:
        """Set the input scale and b_dec from a first sample x [n, d_in] (raw units)."""
        self.scale = float(math.sqrt(self.cfg.d_in) / x.norm(dim=-1).mean().clamp_min(1e-12))
        with torch.no_grad():
            self.sae.b_dec.copy_(geometric_median(x * self.scale))

    def lr_at(self, samples: int) -> float:
        frac = samples / self.cfg.total_samples
        return self.cfg.lr * min(1.0, (1.0 - frac) / 0.2)

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimizer step on a batch x [batch, d_in] (raw units); returns detached stats."""
        sae, cfg = self.sae, self.cfg
        x = x * self.scale
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.samples)
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc  # [batch, d_sae]: encode_pre, this config
        if cfg.arch == "topk":
            vals, idx = pre.topk(cfg.k, dim=-1, sorted=False)
            vals = vals.relu()
            recon = _sparse_decode(idx, vals, sae.W_dec) + sae.b_dec
            var = (x - x.mean(dim=0)).pow(2).sum(-1).mean()
            mse = (recon - x).pow(2).sum(-1).mean()
            loss = mse / var
            fired = torch.zeros(cfg.d_sae, dtype=torch.bool, device=x.device)
            fired[idx[vals > 0]] = True
            dead = self.since_fired >= cfg.dead_after
            aux = self._auxk(pre, dead, x - recon.detach()) if bool(dead.any()) else None
            if aux is not None:
                loss = loss + cfg.auxk_coefficient * aux
            l0 = (vals > 0).sum(-1).float().mean()
        else:
            warm = min(1.0, self.samples / max(1.0, 0.05 * cfg.total_samples))
            if cfg.arch == "jumprelu":
                bw = cfg.extra["bandwidth"]
                acts = _JumpReLU.apply(pre, sae.threshold, bw)
                sparsity = _Step.apply(pre, sae.threshold, bw).sum(-1).mean()  # L0
            else:
                acts = pre.relu()
                sparsity = (acts * sae.W_dec.norm(dim=-1)).sum(-1).mean()
            recon = acts @ sae.W_dec + sae.b_dec
            mse = (recon - x).pow(2).sum(-1).mean()
            loss = mse + warm * cfg.l1_coefficient * sparsity
            fired = (acts > 0).any(dim=0)
            l0 = (acts > 0).sum(-1).float().mean()
            var = (x - x.mean(dim=0)).pow(2).sum(-1).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.arch == "topk":
            _remove_parallel_grad(sae.W_dec)
        self.opt.step()
        if cfg.arch == "topk":
            with torch.no_grad():
                sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        elif cfg.arch == "jumprelu":
            with torch.no_grad():
                sae.threshold.clamp_(min=1e-4)
        self.since_fired += len(x)
        self.since_fired[fired] = 0
        self.samples += len(x)
        self.step += 1
        return {"loss": loss.detach(), "fve": 1 - mse.detach() / var.detach(), "l0": l0.detach()}

    def _auxk(self, pre: torch.Tensor, dead: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """AuxK: the top k_aux dead latents reconstruct the residual [batch, d_in]; normalized
        MSE, scaled down when fewer than k_aux latents are dead (as SAELens does)."""
        dead_ids = dead.nonzero()[:, 0]  # [n_dead]
        k_aux = max(1, self.cfg.d_in // 2)
        scale = min(len(dead_ids) / k_aux, 1.0)
        vals, idx = pre.index_select(-1, dead_ids).topk(min(k_aux, len(dead_ids)), dim=-1,
                                                        sorted=False)
        e_hat = _sparse_decode(dead_ids[idx], vals.relu(), self.sae.W_dec)
        var = (residual - residual.mean(dim=0)).pow(2).sum(-1).mean().clamp_min(1e-12)
        return scale * (e_hat - residual).pow(2).sum(-1).mean() / var

    def dead_fraction(self) -> float:
        return float((self.since_fired >= self.cfg.dead_after).float().mean())

    def export(self) -> SAE:
        """A copy of the SAE in raw units: the input scale folded into the weights."""
        s = self.scale
        out = SAE(self.cfg.d_in, self.cfg.d_sae, arch=self.cfg.arch, k=self.cfg.k,
                  metadata=dict(self.sae.metadata), device=self.device)
        with torch.no_grad():
            for name, p in self.sae.named_parameters():
                getattr(out, name).copy_(p)
            out.W_enc.mul_(s)
            out.W_dec.div_(s)
            out.b_dec.div_(s)
        return out

    # ---- checkpoints --------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """SAELens-format folder (the exported SAE) plus trainer_state.pt to resume from."""
        save_sae(self.export(), folder)
        state = {"config": asdict(self.cfg), "sae": self.sae.state_dict(),
                 "optimizer": self.opt.state_dict(), "samples": self.samples, "step": self.step,
                 "scale": self.scale, "since_fired": self.since_fired.cpu()}
        tmp = folder / f".{STATE_FILE}.tmp"
        torch.save(state, tmp)
        tmp.replace(folder / STATE_FILE)

    def load(self, folder: Path) -> None:
        state = torch.load(folder / STATE_FILE, map_location=self.device, weights_only=False)
        saved = {k: v for k, v in state["config"].items() if k not in ("total_samples", "extra")}
        now = {k: v for k, v in asdict(self.cfg).items() if k not in ("total_samples", "extra")}
        diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
        if diff:
            detail = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"The checkpoint in {folder} was trained with other settings "
                             f"({detail}). Use the same settings, or another checkpoint_dir.")
        self.sae.load_state_dict(state["sae"])
        self.opt.load_state_dict(state["optimizer"])
        self.samples, self.step, self.scale = state["samples"], state["step"], state["scale"]
        self.since_fired = state["since_fired"].to(self.device)


class _JumpReLU(torch.autograd.Function):  # JumpReLU SAEs and transcoders
    """a = pre * H(pre - theta); d a / d theta = -(theta / eps) K((pre - theta) / eps)."""

    @staticmethod
    def forward(ctx, pre, theta, eps):
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return pre * (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad):
        pre, theta = ctx.saved_tensors
        near = ((pre - theta).abs() < ctx.eps / 2).to(pre.dtype)
        g_theta = -(theta / ctx.eps) * near * grad
        return grad * (pre > theta).to(pre.dtype), g_theta.sum_to_size(theta.shape), None


class _Step(torch.autograd.Function):
    """H(pre - theta); d H / d theta = -(1 / eps) K((pre - theta) / eps), no gradient to pre."""

    @staticmethod
    def forward(ctx, pre, theta, eps):
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad):
        pre, theta = ctx.saved_tensors
        near = ((pre - theta).abs() < ctx.eps / 2).to(pre.dtype)
        return None, (-(1.0 / ctx.eps) * near * grad).sum_to_size(theta.shape), None


def _sparse_decode(idx: torch.Tensor, vals: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """Tensor[batch, d_in] = sum_j vals[:, j] * W_dec[idx[:, j]]: the decoder applied to k
    nonzeros per row without materializing [batch, d_sae]."""
    return torch.nn.functional.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum")


def _remove_parallel_grad(W_dec: torch.nn.Parameter) -> None:
    """Project out of W_dec's gradient the component parallel to each (unit) row."""
    if W_dec.grad is None:
        return
    with torch.no_grad():
        w = W_dec / W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        W_dec.grad -= (W_dec.grad * w).sum(-1, keepdim=True) * w


def train_sae(source: Any, *, arch: str = "topk", d_sae: int, k: int | None = None,
              l1_coefficient: float | None = None, total_samples: int, batch_size: int = 4096,
              lr: float | None = None, hook: str | None = None, seed: int = 0,
              device: str | torch.device | None = None, auxk_coefficient: float = 1 / 32,
              dead_after: int | None = None, checkpoint_dir: str | Path | None = None,
              checkpoint_every: int | None = None, resume: bool = True, progress: bool = True,
              buffer_size: int | None = None, model_batch_size: int = 16,
              skip_bos: bool = True, bandwidth: float = 0.2) -> SAE:
    """Train a sparse autoencoder and return it (on `device`; the best available by default).

    source: Tensor[n, d_in]; an iterable of Tensor[batch, d_in] (re-iterated if it can be);
        `(model, corpus)` with `hook`: activations streamed through a shuffling buffer of
        `buffer_size` rows (default 16 batches), BOS position left out when `skip_bos`; or
        SAELens cached activations (a folder written by `iw.cache_activations` or SAELens's
        CacheActivationsRunner, or the `iw.CachedActivations` read from one), `hook` naming the
        column when it holds several: streamed from disk through the same buffer, BOS positions
        (row starts, document separators) left out when `skip_bos`.
    arch: "topk" (needs k), "standard" (l1_coefficient, default 3.0: on the planted-feature
        toy it recovers the features best, 0.98, where 5.0, Anthropic's value, collapses) or
        "jumprelu" (l1_coefficient is the L0 penalty's weight, default 0.5: on the toy, with
        lr 1e-2, recovery 0.97 at L0 4.6 for 4 active features; `bandwidth` the
        straight-through kernel's width, in the scaled units where E|x| = sqrt(d_in)).
    lr: default 2e-4 * sqrt(16384 / d_sae) (Gao et al.'s scaling), at most 2e-3.
    dead_after: samples without firing after which a latent counts as dead (AuxK and the dead
        fraction); default min(10M, max(total_samples / 20, 10 batches)).
    checkpoint_dir: written every `checkpoint_every` samples (default 10% of training) and at
        the end, as an SAELens folder plus trainer_state.pt; with `resume` a run continues from
        the state there (the data stream restarts, reseeded, rather than replaying).
    Ctrl-C stops training early and returns the SAE trained so far (checkpointed, if a dir).
    """
    if arch not in ("topk", "standard", "jumprelu"):
        raise ValueError(f"train_sae trains arch='topk', 'standard' or 'jumprelu', not "
                         f"{arch!r}. (Gated SAEs can be loaded with load_sae and used "
                         "everywhere else.)")
    if arch == "topk" and not k:
        raise ValueError("A TopK SAE needs k, the number of active latents per token "
                         "(e.g. k=32).")
    if total_samples < batch_size:
        raise ValueError(f"total_samples ({total_samples}) must be at least batch_size "
                         f"({batch_size}).")
    dev = resolve_device(device)
    torch.manual_seed(seed)
    batches, d_in, model_name = _source_batches(
        source, hook, batch_size, buffer_size or 16 * batch_size, seed, model_batch_size,
        skip_bos, dev)
    cfg = TrainConfig(
        arch=arch, d_in=d_in, d_sae=d_sae, k=k if arch == "topk" else None,
        l1_coefficient=(_DEFAULT_SPARSITY[arch] if l1_coefficient is None else l1_coefficient)
        if arch != "topk" else None,
        total_samples=total_samples, batch_size=batch_size,
        lr=lr if lr is not None else min(2e-3, 2e-4 * math.sqrt(16384 / d_sae)), seed=seed,
        auxk_coefficient=auxk_coefficient,
        dead_after=dead_after or min(10_000_000, max(total_samples // 20, 10 * batch_size)),
        hook=hook, model_name=model_name,
        extra={"bandwidth": bandwidth} if arch == "jumprelu" else {})
    trainer = _Trainer(cfg, dev)
    folder = Path(checkpoint_dir).expanduser() if checkpoint_dir is not None else None
    first = next(batches)
    if folder is not None and resume and (folder / STATE_FILE).exists():
        trainer.load(folder)
    else:
        trainer.initialize(first)
    every = checkpoint_every or max(batch_size, total_samples // 10)
    _loop(trainer, _prepend(first, batches), folder, every, progress)
    return trainer.export()


def _loop(trainer: _Trainer, batches: Iterator[torch.Tensor], folder: Path | None, every: int,
          progress: bool) -> None:
    from tqdm.auto import tqdm

    cfg = trainer.cfg
    bar = tqdm(total=cfg.total_samples, initial=trainer.samples, unit="samples",
               unit_scale=True, disable=not progress,
               desc=getattr(trainer, "desc", f"train {cfg.arch} SAE"))
    next_ckpt = (trainer.samples // every + 1) * every
    try:
        while trainer.samples < cfg.total_samples:
            x = next(batches, None)
            if x is None:
                warnings.warn(f"The data ran out after {trainer.samples:,} of "
                              f"{cfg.total_samples:,} samples; training stopped there.",
                              stacklevel=3)
                break
            stats = trainer.train_step(x)
            bar.update(len(x))
            if trainer.step % 20 == 1 or trainer.samples >= cfg.total_samples:
                bar.set_postfix(loss=f"{float(stats['loss']):.4f}",
                                fve=f"{float(stats['fve']):.3f}", L0=f"{float(stats['l0']):.1f}",
                                dead=f"{trainer.dead_fraction():.1%}")
            if folder is not None and trainer.samples >= next_ckpt:
                trainer.save(folder)
                next_ckpt += every
    except KeyboardInterrupt:
        warnings.warn(f"Interrupted after {trainer.samples:,} samples: returning the SAE trained "
                      "so far.", stacklevel=3)
    finally:
        bar.close()
    if folder is not None:
        trainer.save(folder)
