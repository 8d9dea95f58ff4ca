"""Pieces of the SAE-vs-baselines comparison that `evaluation_table` assembles: codes cut to a
common L0 (`TopCodes`), offline auto-interp scores of a dictionary's units (`autointerp_scores`)
and planted-feature recovery on toy data for every kind of dictionary (`toy_recovery`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .activations import quiet_truncation

if TYPE_CHECKING:
    from ..model import Model


class TopCodes(nn.Module):
    """A dictionary whose codes keep, per token, only the `k` largest by |code| * |W_dec row|
    (each code's share of the reconstruction): the L0-matched version of any SAE or
    `LinearDictionary`. Same `d_in`, `d_sae`, `hook_name`; decode is the inner one's."""

    def __init__(self, inner: Any, k: int):
        super().__init__()
        if not 0 < k <= inner.d_sae:
            raise ValueError(f"k must be in 1 .. d_sae = {inner.d_sae}; got {k}.")
        self.inner, self.k = inner, int(k)
        self.d_in, self.d_sae, self.hook_name = inner.d_in, inner.d_sae, inner.hook_name
        self.reshape_activations = getattr(inner, "reshape_activations", "none")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        codes = self.inner.encode(x)  # [..., d_sae]
        size = codes.abs() * self.inner.W_dec.detach().norm(dim=-1).to(codes)
        idx = size.topk(self.k, dim=-1, sorted=False).indices
        return torch.zeros_like(codes).scatter_(-1, idx, codes.gather(-1, idx))

    def encode_pre(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.encode_pre(x)

    def decode(self, codes: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return self.inner.decode(codes, x)


def _doc_activations(model: Model, docs: Sequence[str], hook: str, batch_size: int
                     ) -> tuple[list[list[str]], list[torch.Tensor]]:
    """([doc][pos] token strings, per doc Tensor[pos, d]) over real tokens (no padding)."""
    tokens, acts = [], []
    for i in range(0, len(docs), batch_size):
        with quiet_truncation():
            run = model.run(list(docs[i:i + batch_size]), names=[hook])
        lengths = run.attention_mask.sum(-1).tolist()
        cache = run.cache[hook].flatten(2)  # [batch, pos, d]
        for j, n in enumerate(lengths):
            tokens.append(list(run.str_tokens[j][:n]))
            acts.append(cache[j, :n].float())
    return tokens, acts


def autointerp_scores(model: Model, dictionaries: Mapping[str, Any], corpus: Sequence[str], *,
                      n_units: int = 8, seed: int = 0, batch_size: int = 16
                      ) -> dict[str, dict[str, float]]:
    """{name: {"autointerp_correlation", "autointerp_detection_auc", "autointerp_units"}}:
    for `n_units` units drawn at random (with `seed`) among each dictionary's live units
    (active somewhere in `corpus`), the offline statistical explainer (`autointerp.offline`)
    explains each from half of its top 20 contexts and scores the explanation on the other half
    plus 20 random contexts (offline simulator: pooled correlation, detection AUC); means over
    the units. Contexts are 10 tokens before and 4 after the token. BOS positions are left out.
    """
    from ..autointerp.offline import explain_offline
    from ..autointerp.records import records_from_activations, split_records
    from ..autointerp.score import score

    docs = list(corpus)
    out: dict[str, dict[str, float]] = {}
    by_hook: dict[str, tuple[list[list[str]], list[torch.Tensor]]] = {}
    for name, d in dictionaries.items():
        if d.hook_name not in by_hook:
            by_hook[d.hook_name] = _doc_activations(model, docs, d.hook_name, batch_size)
        tokens, acts = by_hook[d.hook_name]
        tokens = [t[1:] for t in tokens]  # BOS left out, as the dictionaries were trained
        with torch.no_grad():
            codes = [d.encode(a[1:]).float().cpu() for a in acts]
        top = torch.cat(codes).max(0).values  # [d_sae]
        live = (top > 0).nonzero()[:, 0].numpy()
        rng = np.random.default_rng(seed)
        units = rng.choice(live, size=min(n_units, len(live)), replace=False) if len(live) \
            else np.array([], dtype=int)
        corr, auc = [], []
        for u in units.tolist():
            records = records_from_activations(tokens, codes, u, seed=seed)
            shown, held = split_records(records)
            s = score(explain_offline(shown, baseline=tokens), held, simulator="offline",
                      fuzzing=False)
            corr.append(s.correlation)
            auc.append(s.detection_auc)
        out[name] = {"autointerp_correlation": _nanmean(corr),
                     "autointerp_detection_auc": _nanmean(auc),
                     "autointerp_units": float(len(units))}
    return out


def _nanmean(values: Sequence[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


def toy_recovery(*, n_features: int = 512, d: int = 128, n_samples: int = 100_000,
                 active: float = 4.0, d_sae: int | None = None, k: int | None = None,
                 seed: int = 0, batch_size: int = 1024, lr: float = 1e-2,
                 kinds: Sequence[str] = ("TopK SAE", "ReLU-L1 SAE", "JumpReLU SAE", "PCA",
                                         "ICA", "overcomplete ICA"),
                 progress: bool = False) -> dict[str, float]:
    """{kind: recovery}: each kind of dictionary trained on the same `n_samples` toy samples
    (`sae.toy`: `n_features` planted unit features in `d` dimensions, `active` on per sample);
    recovery is the mean over the true features of the best cosine with a learned direction.
    SAEs and overcomplete ICA get `d_sae` units (default `n_features`) and one epoch at `lr`;
    TopK's k defaults to round(active); PCA and ICA have d components (all they can)."""
    from ..analysis.fastica import fit_fastica
    from ..analysis.overcomplete_ica import fit_rica
    from ..analysis.streaming_pca import fit_streaming_pca
    from .toy import planted_activations, planted_features, recovery
    from .train import train_sae

    feats = planted_features(n_features, d, seed=seed)
    x = planted_activations(feats, n_samples, active=active, seed=seed)
    m = d_sae or n_features
    common = dict(d_sae=m, total_samples=n_samples, batch_size=batch_size, lr=lr, seed=seed,
                  progress=progress)
    fits = {
        "TopK SAE": lambda: train_sae(x, arch="topk", k=k or max(1, round(active)), **common),
        "ReLU-L1 SAE": lambda: train_sae(x, arch="standard", **common),
        "JumpReLU SAE": lambda: train_sae(x, arch="jumprelu", **common),
        "PCA": lambda: fit_streaming_pca(x.split(65536), d),
        "ICA": lambda: fit_fastica(x, d, seed=seed),
        "overcomplete ICA": lambda: fit_rica(x, m, total_samples=n_samples,
                                             batch_size=batch_size, lr=lr, seed=seed,
                                             progress=progress),
    }
    unknown = [kd for kd in kinds if kd not in fits]
    if unknown:
        raise ValueError(f"Unknown kinds {unknown}; choose from {list(fits)}.")
    return {kd: recovery(fits[kd]().W_dec.detach(), feats) for kd in kinds}
