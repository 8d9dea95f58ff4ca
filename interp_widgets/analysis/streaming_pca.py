"""Streaming PCA: the covariance of any number of activations accumulated batch by batch in
float64 (constant memory: d x d), then eigendecomposed. Written by hand because scikit-learn's
PCA needs all rows in memory and IncrementalPCA cannot run on a GPU.

On devices without float64 (e.g. MPS) the sums are kept on the CPU."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .dictionaries import LinearDictionary


def check_finite(x: torch.Tensor, batch: int) -> None:
    """Refuse NaN/inf in batch x [n, d], saying the batch, row and dimension of the first one."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"Batch {batch} has a non-finite activation ({float(x[row, col])}) "
                         f"at row {row}, dimension {col}: clean the activations first.")


class CovarianceAccumulator:
    """Running float64 sums of x [n, d] batches: count, sum [d], sum of outer products [d, d]."""

    def __init__(self, d: int, device: str | torch.device = "cpu"):
        dev = torch.device(device)
        self.device = torch.device("cpu") if dev.type == "mps" else dev  # MPS has no float64
        self.n, self.d, self.batches = 0, d, 0
        self.sum = torch.zeros(d, dtype=torch.float64, device=self.device)
        self.outer = torch.zeros(d, d, dtype=torch.float64, device=self.device)

    def add(self, x: torch.Tensor) -> None:
        """Add a batch x [n, d]; NaN/inf is refused with the batch and row where it is."""
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"Batch {self.batches} has shape {list(x.shape)}; "
                             f"expected [n, {self.d}].")
        check_finite(x, self.batches)
        x64 = x.to(self.device, torch.float64)
        self.sum += x64.sum(0)
        self.outer += x64.T @ x64
        self.n += len(x)
        self.batches += 1

    def mean(self) -> torch.Tensor:
        return self.sum / self.n

    def covariance(self) -> torch.Tensor:
        """Tensor[d, d]: the sample covariance (divided by n - 1, as scikit-learn does)."""
        if self.n < 2:
            raise ValueError(f"The stream gave {self.n} sample(s); the covariance "
                             "needs at least 2.")
        m = self.mean()
        return (self.outer - self.n * torch.outer(m, m)) / (self.n - 1)


def accumulate(batches: Iterable[torch.Tensor],
               device: str | torch.device = "cpu") -> CovarianceAccumulator:
    """The sums of every batch [n_i, ..., d] of a stream (one pass); an empty stream is refused."""
    acc: CovarianceAccumulator | None = None
    for b in batches:
        b = torch.as_tensor(b).flatten(0, -2)
        if acc is None:
            acc = CovarianceAccumulator(b.shape[1], device)
        acc.add(b)
    if acc is None:
        raise ValueError("The stream gave no batches: give at least one batch of activations.")
    return acc


def fit_streaming_pca(batches: Iterable[torch.Tensor], n_components: int, *,
                      k: int | None = None, hook_name: str | None = None,
                      device: str | torch.device = "cpu") -> LinearDictionary:
    """PCA dictionary from a stream of activation batches [n_i, d]: equal to scikit-learn's PCA
    on the concatenated rows (up to each component's sign, fixed here so the largest-magnitude
    loading is positive)."""
    acc = accumulate(batches, device)
    if not 0 < n_components <= acc.d:
        raise ValueError(f"n_components must be between 1 and d_in = {acc.d}; got {n_components}.")
    if acc.n < n_components + 1:
        raise ValueError(f"The stream ended after {acc.n} samples; {n_components} components "
                         f"need at least {n_components + 1}.")
    evals, evecs = torch.linalg.eigh(acc.covariance())  # ascending
    comps = evecs.flip(-1)[:, :n_components].T  # [n_components, d]
    sign = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    comps = (comps * sign).cpu().float()
    d = LinearDictionary(comps.T, comps, acc.mean().cpu().float(), kind="pca", k=k,
                         hook_name=hook_name)
    d.explained_variance = evals.flip(0)[:n_components].cpu()
    return d
