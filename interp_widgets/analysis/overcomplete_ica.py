"""Overcomplete ICA: reconstruction ICA (RICA; Le, Karpenko, Ngiam and Ng, "ICA with
Reconstruction Cost for Efficient Overcomplete Feature Learning", NIPS 2011).

On whitened data z [d] (whitening from the streamed float64 covariance, as FastICA's), learn
W [m, d] with m >= d components by minimizing, per sample,

    ||W^T W z - z||^2 / d  +  lambda * mean_i g(w_i . z),   g = log cosh or |.| (L1)

The reconstruction cost replaces ICA's orthonormality constraint W W^T = I, which cannot hold
when m > d; the sparsity penalty is ICA's contrast. Trained with Adam on minibatches by the SAE
trainer's streaming loop (`sae.train`: the same sources, shuffling buffer, progress bar and
Ctrl-C handling), so it sees exactly as many tokens as an SAE trained with the same budget.
Written by hand because no kept library has RICA (scikit-learn's ICA is complete only).

In input space the result is a `LinearDictionary` (kind "overcomplete_ica"):
codes = (x - mean) @ W_enc with W_enc = K^T W^T, x_hat = codes @ W_dec + mean with
W_dec = W dewhiten^T, so each unit's output direction is its row of W mapped back out of the
whitened space.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..model import resolve_device
from ..sae.train import TrainConfig, _loop, _source_batches
from .dictionaries import LinearDictionary
from .fastica import Whitening, whitening
from .streaming_pca import CovarianceAccumulator

_PENALTIES = ("logcosh", "l1")


class _RICATrainer:
    """One RICA run's state, with the interface `sae.train._loop` drives: `cfg`, `samples`,
    `step`, `train_step(x)`, `dead_fraction()`, `save(folder)`."""

    def __init__(self, cfg: TrainConfig, wh: Whitening, device: torch.device):
        self.cfg, self.wh, self.device = cfg, wh, device
        self.penalty = cfg.extra["penalty"]
        g = torch.Generator().manual_seed(cfg.seed)
        n_dims = wh.K.shape[0]
        W = torch.randn(cfg.d_sae, n_dims, generator=g)
        W = W / W.norm(dim=-1, keepdim=True)  # unit rows: W^T W is about (m / d) I
        self.W = torch.nn.Parameter((W * math.sqrt(n_dims / cfg.d_sae)).to(device))
        self.opt = torch.optim.Adam([self.W], lr=cfg.lr)
        self.K = wh.K.to(device, torch.float32)
        self.mean = wh.mean.to(device, torch.float32)
        self.samples = self.step = 0
        self.m3: torch.Tensor | None = None
        self.desc = "train overcomplete ICA"

    def lr_at(self, samples: int) -> float:  # constant, then linear decay over the last 20%
        return self.cfg.lr * min(1.0, (1.0 - samples / self.cfg.total_samples) / 0.2)

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.samples)
        z = (x.to(self.device, torch.float32) - self.mean) @ self.K.T  # [batch, n_dims]
        codes = z @ self.W.T  # [batch, m]
        recon = codes @ self.W
        mse = (recon - z).pow(2).sum(-1).mean()
        a = (codes / self.W.norm(dim=-1).clamp_min(1e-12)).abs()  # unit-norm filters' responses
        if self.penalty == "logcosh":  # log cosh(u) = |u| + log1p(exp(-2|u|)) - log 2, stably

            sparsity = (a + torch.log1p(torch.exp(-2 * a)) - math.log(2)).mean()
        else:
            sparsity = a.mean()
        loss = mse / z.shape[1] + self.cfg.l1_coefficient * sparsity
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.samples += len(x)
        self.step += 1
        m3 = codes.detach().pow(3).mean(0)  # [m]: running skew, to orient the units at the end
        self.m3 = m3 if self.m3 is None else 0.99 * self.m3 + 0.01 * m3
        var = z.pow(2).sum(-1).mean()  # whitened: z has mean 0
        return {"loss": loss.detach(), "fve": 1 - mse.detach() / var.detach(),
                "l0": (codes != 0).sum(-1).float().mean().detach()}

    def dead_fraction(self) -> float:
        """Share of components whose row of W has shrunk to nothing (< 1e-3 of the largest)."""
        norms = self.W.detach().norm(dim=-1)
        return float((norms < 1e-3 * norms.max()).float().mean())

    def export(self, k: int | None, hook_name: str | None) -> LinearDictionary:
        W = self.W.detach().double().cpu()
        if self.m3 is not None:  # each unit's long tail on its positive side, as FastICA's
            W = W * torch.where(self.m3.cpu() < 0, -1.0, 1.0).double()[:, None]
        W_enc = self.wh.K.cpu().T @ W.T  # [d_in, m]
        W_dec = W @ self.wh.dewhiten.cpu().T  # [m, d_in]
        d = LinearDictionary(W_enc, W_dec, self.wh.mean.cpu(), kind="overcomplete_ica", k=k,
                             hook_name=hook_name)
        d.W_whitened, d.whitening_ = W.float(), self.wh
        return d


def fit_rica(source: Any, n_components: int, *, total_samples: int, penalty: str = "logcosh",
             sparsity: float = 1.0, batch_size: int = 4096, lr: float = 1e-2,
             whiten_samples: int | None = None, n_dims: int | None = None,
             hook: str | None = None, k: int | None = None, seed: int = 0,
             device: str | torch.device | None = None, progress: bool = True,
             buffer_size: int | None = None, model_batch_size: int = 16,
             skip_bos: bool = True) -> LinearDictionary:
    """Overcomplete ICA dictionary with `n_components` units (RICA; module docstring).

    source: anything `train_sae` trains on (Tensor[n, d_in], an iterable of batches,
        `(model, corpus)` with `hook`, cached activations), streamed the same way.
    total_samples: rows trained on (after the whitening); whiten_samples: rows the whitening
        covariance is summed over first (default min(total_samples, 1M)).
    penalty: "logcosh" or "l1"; sparsity: its weight lambda. n_dims: whitened dimensions kept
        (default the data's rank). lr: Adam's, decayed linearly over the last 20%.
    Ctrl-C stops training early and returns the dictionary trained so far."""
    if penalty not in _PENALTIES:
        raise ValueError(f"penalty must be 'logcosh' or 'l1'; got {penalty!r}.")
    if total_samples < batch_size:
        raise ValueError(f"total_samples ({total_samples}) must be at least batch_size "
                         f"({batch_size}).")
    dev = resolve_device(device)
    batches, d_in, model_name = _source_batches(
        source, hook, batch_size, buffer_size or 16 * batch_size, seed, model_batch_size,
        skip_bos, dev)
    want = whiten_samples or min(total_samples, 1_000_000)
    acc = CovarianceAccumulator(d_in, dev)
    while acc.n < want:
        b = next(batches, None)
        if b is None:
            break
        acc.add(b)
    full = whitening(acc, 1, overcomplete_hint=False)  # the rank, from every eigenvalue
    n_dims = n_dims or full.rank
    if n_dims > full.rank:
        raise ValueError(f"n_dims = {n_dims} is more than the data's rank ({full.rank}).")
    if n_components < n_dims:
        raise ValueError(f"Overcomplete ICA wants at least as many components as whitened "
                         f"dimensions ({n_dims}); got {n_components}. For fewer, use ICA "
                         "(kind='ica', fit_fastica).")
    wh = whitening(acc, n_dims, overcomplete_hint=False)
    cfg = TrainConfig(arch="rica", d_in=d_in, d_sae=n_components, k=None,
                      l1_coefficient=sparsity, total_samples=total_samples,
                      batch_size=batch_size, lr=lr, seed=seed, auxk_coefficient=0.0,
                      dead_after=total_samples, hook=hook, model_name=model_name,
                      extra={"penalty": penalty, "n_dims": n_dims,
                             "whiten_samples": acc.n})
    trainer = _RICATrainer(cfg, wh, dev)
    _loop(trainer, batches, None, total_samples, progress)
    return trainer.export(k, hook)
