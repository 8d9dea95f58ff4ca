"""`evaluate_sae`: how well a dictionary (an SAE, or a PCA/ICA baseline) reads and replaces a
model's activations over a corpus.

Metrics, over the corpus's real tokens (BOS left out with `skip_bos`):
  - L0: mean number of nonzero codes per token;
  - FVE: fraction of variance explained, pooled: 1 - sum |x - x_hat|^2 / sum |x - mean(x)|^2
    with the sums and the mean over the whole corpus (not averaged per batch);
  - CE loss clean / spliced / zero-ablated, CE loss recovered = (zero - spliced) /
    (zero - clean), delta loss = spliced - clean;
  - dead fraction (latents that never fire), dense fraction (firing on more than
    `dense_threshold` of tokens) and the histogram of log10 feature density.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .activations import quiet_truncation
from .splice import check_saes, run_with_saes

if TYPE_CHECKING:
    import pandas as pd

    from ..model import Model


@dataclass
class SAEEvaluation:
    """The numbers `evaluate_sae` reports (see the module docstring); `density` is
    Tensor[d_sae], each latent's firing frequency; `histogram` is (counts, log10 bin edges) over
    the live latents."""

    n_tokens: int
    l0: float
    fve: float
    mse: float
    ce_clean: float
    ce_spliced: float
    ce_zero: float
    ce_recovered: float
    delta_loss: float
    dead_fraction: float
    dense_fraction: float
    density: torch.Tensor = field(repr=False)
    histogram: tuple[np.ndarray, np.ndarray] = field(repr=False)

    def summary(self) -> dict[str, float]:
        """The scalar metrics as a dict (one row of `evaluation_table`)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("density", "histogram")}


def evaluation_table(evals: Mapping[str, Any], model: Model | None = None,
                     corpus: Iterable[str] | None = None, *, l0: int | None = None,
                     autointerp_units: int = 0, recovery: Mapping[str, float] | None = None,
                     seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """One row per named dictionary, e.g. ``{"TopK SAE": sae, "PCA": pca, "ICA": e3}``.

    Values are `SAEEvaluation`s, or dictionaries (SAEs, `LinearDictionary`s, anything
    `evaluate_sae` takes), evaluated here on `model` over `corpus` (held-out documents).
    l0: the L0-matched comparison: each dictionary again with its codes cut to the `l0` largest
        per token (`compare.TopCodes`): columns `fve_at_l0`, `ce_recovered_at_l0`.
    autointerp_units: that many random live units of each dictionary explained and scored by
        the offline statistical explainer/simulator (`compare.autointerp_scores`).
    recovery: {name: planted-feature recovery} from `compare.toy_recovery`, as a column
        (NaN for names it lacks)."""
    import pandas as pd

    from .compare import TopCodes, autointerp_scores

    docs = list(corpus) if corpus is not None else None
    dicts = {n: d for n, d in evals.items() if not isinstance(d, SAEEvaluation)}
    if dicts and (model is None or not docs):
        raise ValueError(f"{sorted(dicts)} are dictionaries, not evaluations: pass model= and "
                         "corpus= (held-out documents) to evaluate them, or evaluate_sae's "
                         "results.")

    def run(d: Any) -> SAEEvaluation:
        return evaluate_sae(model, d, docs, progress=progress)

    rows = {name: (e if isinstance(e, SAEEvaluation) else run(e)).summary()
            for name, e in evals.items()}
    if l0 is not None:
        for name, d in dicts.items():
            e = run(TopCodes(d, min(l0, d.d_sae)))
            rows[name].update(fve_at_l0=e.fve, ce_recovered_at_l0=e.ce_recovered,
                              l0_matched=e.l0)
    if autointerp_units:
        for name, extra in autointerp_scores(model, dicts, docs, n_units=autointerp_units,
                                             seed=seed).items():
            rows[name].update(extra)
    if recovery is not None:
        for name in rows:
            rows[name]["toy_recovery"] = float(recovery.get(name, float("nan")))
    return pd.DataFrame(rows).T


def evaluate_sae(model: Model, sae: Any, corpus: Iterable[str], *, batch_size: int = 16,
                 skip_bos: bool = True, dense_threshold: float = 0.1, bins: int = 40,
                 progress: bool = True) -> SAEEvaluation:
    """Evaluate `sae` (anything with `encode`, `decode`, `d_in`, `d_sae`, `hook_name`) on
    `model`'s activations at `sae.hook_name` over `corpus` (a list of documents, each cut to
    the model's context).

    The spliced and zero-ablated runs leave the BOS position untouched when `skip_bos`, so
    that an SAE trained without it is judged on the tokens it was trained on."""
    from tqdm.auto import tqdm

    check_saes(model, [sae])
    docs = list(corpus)
    if not docs:
        raise ValueError("The corpus is empty: give at least one document.")
    hook = sae.hook_name
    acc = _Accumulator(sae.d_sae)
    for i in tqdm(range(0, len(docs), batch_size), disable=not progress, desc="evaluate SAE"):
        chunk = docs[i:i + batch_size]
        with quiet_truncation():
            clean = model.run(chunk, names=[hook])
            spliced = run_with_saes(model, chunk, [sae], skip_bos=skip_bos)
            zero = _zero_ablated(model, chunk, hook, skip_bos)
        keep = clean.attention_mask.bool()
        if skip_bos:
            keep &= ~model.bos_mask(clean.tokens)
        x = clean.cache[hook][keep].flatten(1).float()  # [n, d_in]
        with torch.no_grad():
            codes = sae.encode(x)
            recon = sae.decode(codes, x).float().to(x.device)
        acc.add(x, recon, codes, clean.loss, spliced.loss, zero.loss)
    return acc.result(dense_threshold, bins)


def _zero_ablated(model: Model, docs: Sequence[str], hook: str, skip_bos: bool):
    def zero(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
        out = torch.zeros_like(x)
        if skip_bos and x.ndim >= 3:
            out[:, 0] = x[:, 0]
        return out

    with model.bridge.hooks(fwd_hooks=[(hook, zero)]):
        return model.run(list(docs))


class _Accumulator:
    """Running sums for pooled statistics, kept in float64 on the CPU. Each batch is summed on
    its device in float64, or in float32 on MPS, which has no float64."""

    def __init__(self, d_sae: int):
        self.n = 0
        self.sum_x = self.sum_sq = self.sum_err = self.l0 = 0.0
        self.fires = torch.zeros(d_sae, dtype=torch.float64)
        self.losses = {"clean": [], "spliced": [], "zero": []}

    def add(self, x, recon, codes, clean, spliced, zero) -> None:
        dt = torch.float32 if x.device.type == "mps" else torch.float64
        x = x.to(dt)
        self.n += len(x)
        self.sum_x = self.sum_x + x.sum(dim=0).cpu().double()
        self.sum_sq += float(x.pow(2).sum())
        self.sum_err += float((x - recon.to(dt)).pow(2).sum())
        nz = codes != 0
        self.l0 += float(nz.sum())
        self.fires += nz.sum(dim=0).cpu().double()
        valid = ~clean.isnan()
        for key, loss in (("clean", clean), ("spliced", spliced), ("zero", zero)):
            self.losses[key].append(loss[valid].float().cpu().double())

    def result(self, dense_threshold: float, bins: int) -> SAEEvaluation:
        if self.n == 0:
            raise ValueError("No tokens to evaluate: the documents are too short (each needs a "
                             "token after BOS).")
        mean = self.sum_x / self.n
        total_var = self.sum_sq - self.n * float(mean.pow(2).sum())
        ce = {k: float(torch.cat(v).mean()) for k, v in self.losses.items()}
        density = (self.fires / self.n).float()
        live = density[density > 0]
        counts, edges = np.histogram(np.log10(live.numpy()), bins=bins) if len(live) else (
            np.zeros(bins, dtype=np.int64), np.linspace(-6, 0, bins + 1))
        gap = ce["zero"] - ce["clean"]
        return SAEEvaluation(
            n_tokens=self.n, l0=self.l0 / self.n, fve=1 - self.sum_err / max(total_var, 1e-12),
            mse=self.sum_err / self.n, ce_clean=ce["clean"], ce_spliced=ce["spliced"],
            ce_zero=ce["zero"],
            ce_recovered=(ce["zero"] - ce["spliced"]) / gap if gap else float("nan"),
            delta_loss=ce["spliced"] - ce["clean"],
            dead_fraction=float((density == 0).float().mean()),
            dense_fraction=float((density > dense_threshold).float().mean()),
            density=density, histogram=(counts, edges))
