"""Dictionary features (SAE latents, or PCA/ICA codes) read one at a time or on one prompt: what
the feature writes to the logits, its nearest features, where it fires on a prompt, which features
are active at a token, and what the prediction becomes when a feature is ablated or clamped.

These are the numbers behind the FeatureBrowser / PromptFeatures views; the corpus scan of every
feature at once (`scan_features`) is in `feature_scan.py`.
A dictionary is anything with `encode`, `feature_directions()`, `d_sae` and `hook_name`
(`interp_widgets.sae.SAE`, `analysis.dictionaries.LinearDictionary`). Logit effects are the direct
path (direction @ W_U, LayerNorm folded at load), as in `neurons.direct_logit_effect`.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from .feature_scan import scan_features  # noqa: F401  (re-exported)
from .logit_lens import single_token_id
from .neurons import _token_table

if TYPE_CHECKING:
    from ..model import Model
    from ..units import UnitScan as FeatureScan


def _check_feature(sae: Any, feature: int) -> int:
    try:
        feature = operator.index(feature)
    except TypeError:
        raise TypeError(f"A feature is an integer id; got {feature!r}.") from None
    if not 0 <= feature < sae.d_sae:
        raise IndexError(f"Feature {feature!r} is out of range: this dictionary has features "
                         f"0 .. {sae.d_sae - 1}.")
    return feature


def _direction(model: Model, sae: Any) -> torch.Tensor:
    """Tensor[d_sae, d_model]: feature directions, centred when the model uses LayerNorm."""
    w = sae.feature_directions().detach().float().to(model.device)
    if str(model.cfg.normalization_type).startswith("LN"):
        w = w - w.mean(dim=-1, keepdim=True)  # LayerNorm removes the mean anyway
    return w


def find_features(model: Model, sae: Any, token: str, *, against: str | None = None,
                  k: int = 10) -> pd.DataFrame:
    """The k features whose decoder direction most raises `token`'s logit (per unit of
    activation, through the unembedding; centred when the model uses LayerNorm), or the logit
    difference ``token - against``: the SAE counterpart of `find_neurons`. Columns: feature,
    effect."""
    ids = [single_token_id(model, t) for t in (token, against) if t is not None]
    if len(ids) == 2 and ids[0] == ids[1]:
        raise ValueError(f"against={against!r} is the token itself; give a rival token.")
    with torch.no_grad():
        u = model.bridge.W_U[:, ids[0]].float()
        if len(ids) == 2:
            u = u - model.bridge.W_U[:, ids[1]].float()
        effect = (_direction(model, sae) @ u).cpu()  # [d_sae]
    top = effect.topk(min(k, effect.numel()))
    return pd.DataFrame({"feature": top.indices.tolist(), "effect": top.values.tolist()})


@dataclass
class FeatureLogitEffect:
    """effect: Tensor[vocab] = direction[feature] @ W_U (logit change per unit of activation);
    top / bottom: DataFrames (token, id, effect) of the k most raised / lowered tokens."""

    feature: int
    effect: torch.Tensor
    top: pd.DataFrame
    bottom: pd.DataFrame


def feature_logit_effect(model: Model, sae: Any, feature: int, k: int = 10) -> FeatureLogitEffect:
    """The tokens whose logits the feature's decoder direction most raises and lowers."""
    f = _check_feature(sae, feature)
    with torch.no_grad():
        effect = (_direction(model, sae)[f] @ model.bridge.W_U.float()).cpu()  # [vocab]
    return FeatureLogitEffect(f, effect, _token_table(model, effect, k, None, True),
                              _token_table(model, effect, k, None, False))


def nearest_features(sae: Any, feature: int, k: int = 10) -> pd.DataFrame:
    """The k features whose decoder directions are closest to `feature`'s (cosine), as a
    DataFrame (feature, cosine), most similar first; the feature itself is left out."""
    f = _check_feature(sae, feature)
    with torch.no_grad():
        w = sae.feature_directions().detach().float()
        w = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        cos = w @ w[f]  # [d_sae]
        cos[f] = -float("inf")
        top = cos.topk(min(k, sae.d_sae - 1))
    return pd.DataFrame({"feature": top.indices.tolist(), "cosine": top.values.tolist()})


def prompt_feature_acts(model: Model, sae: Any, prompt: str) -> tuple[list[str], torch.Tensor]:
    """(token strings, Tensor[pos, d_sae]): every feature's activation at every token of the
    prompt (the clean run's activation at `sae.hook_name`, encoded)."""
    from ..sae.splice import check_saes

    check_saes(model, [sae])
    run = model.run(prompt, names=[sae.hook_name])
    with torch.no_grad():
        acts = sae.encode(run.cache[sae.hook_name][0]).float().cpu()  # [pos, d_sae]
    return run.str_tokens, acts


def active_features(model: Model, sae: Any, prompt: str, pos: int = -1, *, k: int = 10,
                    by: str = "activation", token: str | int | None = None) -> pd.DataFrame:
    """The features active at token `pos` of the prompt, ranked `by` "activation" or by
    "logit": their direct contribution (activation x direction @ W_U[:, token]) to `token`'s
    logit (default: the model's top prediction there). Columns: feature, activation,
    logit_contribution."""
    if by not in ("activation", "logit"):
        raise ValueError(f"by must be 'activation' or 'logit'; got {by!r}.")
    toks, acts = prompt_feature_acts(model, sae, prompt)
    n = len(toks)
    if not -n <= pos < n:
        raise IndexError(f"pos {pos} is out of range for a prompt of {n} tokens "
                         f"(use -{n} .. {n - 1}).")
    a = acts[pos % n]  # [d_sae]
    tid = _token_id(model, prompt, pos % n, token)
    with torch.no_grad():
        per_unit = (_direction(model, sae) @ model.bridge.W_U[:, tid].float()).cpu()  # [d_sae]
    contrib = a * per_unit
    live = (a != 0).nonzero()[:, 0]
    key = a[live] if by == "activation" else contrib[live].abs()
    order = live[key.argsort(descending=True)[:k]]
    return pd.DataFrame({"feature": order.tolist(), "activation": a[order].tolist(),
                         "logit_contribution": contrib[order].tolist()})


def _token_id(model: Model, prompt: str, pos: int, token: str | int | None) -> int:
    if token is None:
        return int(model.run(prompt).logits[0, pos].argmax())
    if isinstance(token, int):
        return token
    ids = model.tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{token!r} is {len(ids)} tokens; give a single token (e.g. with its "
                         "leading space).")
    return ids[0]


@dataclass
class FeatureIntervention:
    """Next-token predictions at `pos` before and after the edit, as [(token, prob), ...], and
    the KL divergence (nats) of the edited distribution from the clean one."""

    before: list[tuple[str, float]]
    after: list[tuple[str, float]]
    kl: float


def intervene_on_feature(model: Model, sae: Any, prompt: str, feature: int, *,
                         value: float | None = None, mode: str = "clamp", pos: int = -1,
                         k: int = 5) -> FeatureIntervention:
    """Edit one feature (mode "ablate", "clamp" to `value`, or "steer" by `value`) at every
    position, with the SAE's error term kept so only the feature changes, and compare the
    next-token distribution at `pos` with the clean run's."""
    from ..sae.splice import ablate, clamp, run_with_saes, steer

    f = _check_feature(sae, feature)
    if mode != "ablate" and value is None:
        raise ValueError(f"mode {mode!r} needs a value.")
    edits = {"ablate": lambda: ablate(sae, f), "clamp": lambda: clamp(sae, f, value),
             "steer": lambda: steer(sae, f, value)}
    if mode not in edits:
        raise ValueError(f"mode must be 'ablate', 'clamp' or 'steer'; got {mode!r}.")
    clean = model.run(prompt)
    edited = run_with_saes(model, prompt, [sae], use_error_term=True, edits=[edits[mode]()])
    p = clean.logits[0, pos].float().log_softmax(-1)
    q = edited.logits[0, pos].float().log_softmax(-1)
    kl = float((q.exp() * (q - p)).sum())
    return FeatureIntervention(clean.top_predictions(pos, k), edited.top_predictions(pos, k), kl)


def feature_table(scan: FeatureScan, explanations: dict[int, Any] | None = None) -> pd.DataFrame:
    """One row per feature of a feature scan: feature, density, max (largest activation seen),
    top_token (the token at the feature's top example; "" if it never fired) and explanation
    (text from `explanations` {feature: text or (text, score)}, "" where none)."""
    vocab = scan.meta["vocab"]
    explain = {int(f): (e[0] if isinstance(e, (tuple, list)) else e)
               for f, e in (explanations or {}).items()}
    return pd.DataFrame({
        "feature": range(scan.n_neurons),
        "density": scan.density.float().numpy(),
        "max": scan.max_values().numpy(),
        "top_token": [vocab.get(str(i), "") if i >= 0 else ""
                      for i in scan.top_token_ids().tolist()],
        "explanation": [str(explain.get(f, "")) for f in range(scan.n_neurons)],
    })

def search_features(table: pd.DataFrame, query: str = "", sort: str = "max") -> pd.DataFrame:
    """Rows of `feature_table` matching `query` (a feature id, or text found, case-insensitive,
    in the top token or the explanation), sorted by "max" or "density" (descending) or
    "feature"; an exact id match comes first."""
    if sort not in ("max", "density", "feature"):
        raise ValueError(f"sort must be 'max', 'density' or 'feature'; got {sort!r}.")
    q = query.strip()
    rows = table
    if q:
        low = q.lower()
        hit = (table["top_token"].str.lower().str.contains(low, regex=False)
               | table["explanation"].str.lower().str.contains(low, regex=False))
        if q.isdigit():
            hit |= table["feature"] == int(q)
        rows = table[hit]
    rows = rows.sort_values(sort, ascending=sort == "feature", kind="stable")
    if q.isdigit():
        exact = rows["feature"] == int(q)
        rows = pd.concat([rows[exact], rows[~exact]])
    return rows


def label_selectivity(model: Model, labelled: Sequence[tuple[str, str]], label: str, *,
                      sae: Any = None, hook: str | None = None,
                      batch_size: int = 16) -> pd.DataFrame:
    """How much each unit prefers documents labelled `label`: for the features of `sae`, or the
    raw units of `hook` (e.g. MLP neurons at "blocks.1.mlp.hook_post") when no SAE is given.

    labelled: (document, label) pairs, e.g. `iw.demo.corpus_with_labels(n)`. Over all real
    tokens but BOS: selectivity = (mean in label - mean elsewhere) / std over all tokens, a
    standardized effect size comparable across bases. Columns: unit, mean_in, mean_out,
    selectivity; most selective first."""
    from ..sae.activations import quiet_truncation

    if (sae is None) == (hook is None):
        raise ValueError("Give exactly one of sae= (its features) or hook= (raw units).")
    if sae is not None:
        from ..sae.splice import check_saes

        check_saes(model, [sae])
        hook = sae.hook_name
    labels = [lab for _, lab in labelled]
    if label not in labels:
        raise ValueError(f"No document is labelled {label!r}; labels: {sorted(set(labels))}.")
    sums = {True: 0.0, False: 0.0}
    counts = {True: 0, False: 0}
    sumsq = 0.0
    for start in range(0, len(labelled), batch_size):
        chunk = labelled[start:start + batch_size]
        with quiet_truncation():
            run = model.run([d for d, _ in chunk], names=[hook])
        keep = run.attention_mask.bool() & ~model.bos_mask(run.tokens)
        acts = run.cache[hook].flatten(2)  # [batch, pos, d]
        for row, (_, lab) in enumerate(chunk):
            x = acts[row][keep[row]].float()  # [tokens, d], on the model's device
            if sae is not None:
                with torch.no_grad():
                    x = sae.encode(x.to(getattr(sae, "dtype", x.dtype))).float()
            x = x.cpu().double()  # float64 only on the CPU (MPS has none)
            sums[lab == label] = sums[lab == label] + x.sum(0)
            counts[lab == label] += len(x)
            sumsq = sumsq + x.pow(2).sum(0)
    n = counts[True] + counts[False]
    mean_in, mean_out = sums[True] / max(counts[True], 1), sums[False] / max(counts[False], 1)
    mean = (sums[True] + sums[False]) / n
    std = (sumsq / n - mean.pow(2)).clamp_min(0).sqrt()
    score = (mean_in - mean_out) / (std + 1e-8)
    order = score.argsort(descending=True)
    return pd.DataFrame({"unit": order.tolist(), "mean_in": mean_in[order].float().tolist(),
                         "mean_out": mean_out[order].float().tolist(),
                         "selectivity": score[order].float().tolist()})
