"""Toy data with known ground truth (Sharkey et al. 2022 style): many unit-norm features in fewer
dimensions, a few active per sample; and the recovery score that checks a dictionary finds them."""

from __future__ import annotations

import torch


def planted_features(n_features: int, d: int, *, seed: int = 0) -> torch.Tensor:
    """Tensor[n_features, d]: random unit feature directions (n_features > d: superposition)."""
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n_features, d, generator=g)
    return f / f.norm(dim=-1, keepdim=True)


def planted_activations(features: torch.Tensor, n: int, *, active: float = 4.0,
                        seed: int = 0) -> torch.Tensor:
    """Tensor[n, d]: samples, each a sum of features active independently with probability
    `active / n_features` (so `active` on average), with magnitudes uniform in [0, 1]."""
    g = torch.Generator().manual_seed(seed + 1)
    n_features = features.shape[0]
    on = torch.rand(n, n_features, generator=g) < active / n_features
    mags = torch.rand(n, n_features, generator=g) * on
    return mags @ features


def recovery(directions: torch.Tensor, features: torch.Tensor) -> float:
    """Mean over the true features [n_features, d] of the best cosine similarity with any learned
    direction [n_dirs, d] (decoder rows): 1.0 means every feature was found exactly."""
    a = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = features / features.norm(dim=-1, keepdim=True)
    return float((b @ a.T).max(dim=1).values.mean())
