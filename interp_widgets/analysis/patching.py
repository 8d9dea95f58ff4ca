"""Activation patching and attribution patching between a clean and a corrupted prompt.

`activation_patching` runs the corrupted prompt with one piece of the clean run's activations
patched in, for every layer x position (x head), and reads a metric off each patched run. It gives
the numbers of TransformerLens's `transformer_lens.patching.get_act_patch_*`, but stacks many
patched runs into one batched forward pass instead of one forward per patch, which TransformerLens
has no option for. `attribution_patching` estimates the same grid from one corrupted forward and
backward (TransformerLens's `cache_activation_and_gradient`), for every component kind.

A `Patcher` holds one clean/corrupt pair and its clean activations, so a live view can re-run
the model with any set of cells interpolated by alpha between corrupt (0) and clean (1).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..model import Inputs, Model
from .metrics import Metric, as_metric, metric_name
from .uncertainty import Estimate, bootstrap, mean_weights

#: component -> (hook suffix under ``blocks.{layer}.``, activation kind)
COMPONENTS: dict[str, tuple[str, str]] = {
    "resid_pre": ("hook_resid_pre", "resid"),  # [batch, pos, d_model]
    "attn_out": ("hook_attn_out", "resid"),
    "mlp_out": ("hook_mlp_out", "resid"),
    "head_out": ("attn.hook_z", "head"),  # [batch, pos, head, d_head]
    "head_q": ("attn.hook_q", "head"),
    "head_k": ("attn.hook_k", "head"),
    "head_v": ("attn.hook_v", "head"),
    "head_pattern": ("attn.hook_pattern", "pattern"),  # [batch, head, q_pos, k_pos]
}
POSITIONS = ("each", "all")
#: kind -> the position axis of an activation without its batch axis (query position of patterns)
POS_AXIS = {"resid": 0, "head": 0, "pattern": 1}
#: rows x prompts x positions x vocab floats one batched forward may produce (1 GiB of logits)
LOGIT_BUDGET = 2**28


def check_component(component: str) -> str:
    if component not in COMPONENTS:
        raise ValueError(f"Unknown component {component!r}. Use one of: "
                         f"{', '.join(repr(c) for c in COMPONENTS)}.")
    return component


def component_hook(component: str, layer: int) -> str:
    """``blocks.{layer}.<hook>`` for `component` (e.g. ``head_out`` -> ``attn.hook_z``)."""
    return f"blocks.{layer}.{COMPONENTS[check_component(component)][0]}"


def result_dims(component: str, positions: str) -> tuple[str, ...]:
    """Axis names of a sweep's values: (layer, pos), (layer,), (layer, pos, head), (layer, head)."""
    if positions not in POSITIONS:
        raise ValueError(f"positions must be 'each' or 'all', got {positions!r}.")
    has_head = COMPONENTS[check_component(component)][1] != "resid"
    return ("layer",) + (("pos",) if positions == "each" else ()) + (("head",) if has_head else ())


@dataclass(frozen=True)
class Cell:
    """One patch target: `component` at `layer`, position `pos` (None: every position) and,
    for head components, `head`."""

    component: str
    layer: int
    pos: int | None = None
    head: int | None = None


@dataclass
class PatchResult:
    """A labelled grid of metric values, one per patched cell.

    values: Tensor over `dims` (e.g. ``("layer", "pos")`` -> [layer, pos]).
    labels: {dim: [label per index]}; positions are labelled "clean" or "clean/corrupt" tokens.
    normalized: True: 0 = the corrupted run's metric, 1 = the clean run's; False: raw metric.
    method: "activation patching" (exact) or "attribution patching" (a gradient estimate).
    """

    values: torch.Tensor
    dims: tuple[str, ...]
    labels: dict[str, list[str]]
    component: str
    positions: str
    metric: str
    clean_value: float
    corrupt_value: float
    normalized: bool
    method: str
    clean_tokens: list[str] = field(default_factory=list)
    corrupt_tokens: list[str] = field(default_factory=list)

    def raw(self) -> torch.Tensor:
        """The values as raw metric values (undoes normalization)."""
        if not self.normalized:
            return self.values
        return self.corrupt_value + self.values * (self.clean_value - self.corrupt_value)

    def normalized_values(self) -> torch.Tensor:
        """The values on the 0 = corrupt, 1 = clean scale."""
        if self.normalized:
            return self.values
        return (self.values - self.corrupt_value) / (self.clean_value - self.corrupt_value)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per cell: an index and a label column per dim, then "value"."""
        idx = torch.cartesian_prod(*[torch.arange(n) for n in self.values.shape])
        idx = idx.reshape(-1, len(self.dims))
        df = pd.DataFrame(idx.numpy(), columns=list(self.dims))
        for d in self.dims:
            df[f"{d}_label"] = [self.labels[d][i] for i in df[d]]
        df["value"] = self.values.reshape(-1).float().cpu().numpy()
        return df

    def top(self, k: int = 5) -> pd.DataFrame:
        """The `k` cells with the largest absolute value."""
        df = self.to_dataframe()
        return df.reindex(df["value"].abs().sort_values(ascending=False).index).head(k)

    def correlation(self, other: PatchResult) -> float:
        """Pearson correlation of the values of two results over the same cells."""
        if self.values.shape != other.values.shape:
            raise ValueError(f"Results of shapes {tuple(self.values.shape)} and "
                             f"{tuple(other.values.shape)} cover different cells.")
        a = self.normalized_values().reshape(-1).double()
        b = other.normalized_values().reshape(-1).double()
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


@dataclass
class PatchOutcome:
    """One patched run: the metric, on the 0 = corrupt .. 1 = clean scale too (None when clean
    and corrupt give the same metric), and the top next tokens [(token, prob)] of prompt 0."""

    cells: list[Cell]
    alpha: float
    value: float
    normalized: float | None
    top: list[tuple[str, float]]


def pair_tokens(model: Model, clean: Inputs, corrupt: Inputs, *,
                prepend_bos: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, corrupt) LongTensor[batch, pos] of one shape; errors show both tokenizations.
    prepend_bos: None puts the model's BOS first (`Model.bos`: none on Qwen2-style models)."""
    c_tok, c_mask, _ = model._tokenize(clean, prepend_bos=prepend_bos)
    k_tok, k_mask, _ = model._tokenize(corrupt, prepend_bos=prepend_bos)
    for what, mask in (("clean", c_mask), ("corrupt", k_mask)):
        if (mask == 0).any():
            lengths = mask.sum(1).tolist()
            raise ValueError(f"The {what} prompts have different token lengths {lengths}: "
                             "every prompt in a patching batch needs the same number of tokens.")
    if c_tok.shape[0] != k_tok.shape[0]:
        raise ValueError(f"{c_tok.shape[0]} clean prompts but {k_tok.shape[0]} corrupt ones: "
                         "give one corrupt prompt per clean prompt.")
    if c_tok.shape != k_tok.shape:
        ct, kt = model.to_str_tokens(c_tok[0]), model.to_str_tokens(k_tok[0])
        raise ValueError(
            f"Clean and corrupt must have the same number of tokens, but clean has {len(ct)} and "
            f"corrupt {len(kt)}.\n  clean:   {ct}\n  corrupt: {kt}\nChange the wording so the "
            "tokens line up position by position (e.g. swap names that are one token each).")
    return c_tok, k_tok


def _cell_weight(kind: str, shape: Sequence[int], cell: Cell, alpha: float) -> torch.Tensor:
    """Tensor[*shape, 1]: alpha where `cell` sits in one activation (batch axis dropped), else 0.

    shape: [pos] (resid), [pos, head] (head vectors) or [head, q_pos] (patterns)."""
    w = torch.zeros(*shape, 1)
    pos = slice(None) if cell.pos is None else cell.pos
    if kind == "resid":
        w[pos] = alpha
    elif kind == "head":
        w[pos, cell.head] = alpha
    else:
        w[cell.head, pos] = alpha
    return w


class Patcher:
    """A clean/corrupt pair bound to a model and a metric, ready to patch.

    clean, corrupt: strings, lists of strings or token ids of equal token length.
    metric: logits [batch, pos, vocab] -> scalar (see `metrics`); `max_rows`: patched runs per
    batched forward (default: as many as fit `LOGIT_BUDGET`); `prepend_bos`: see `pair_tokens`."""

    def __init__(self, model: Model, clean: Inputs, corrupt: Inputs,
                 metric: Callable[[torch.Tensor], Any], *, max_rows: int | None = None,
                 prepend_bos: bool | None = None):
        self.model = model
        self.clean_tokens, self.corrupt_tokens = pair_tokens(model, clean, corrupt,
                                                             prepend_bos=prepend_bos)
        self.metric = as_metric(metric, model)
        self.metric_name = metric_name(metric)
        self.batch, self.n_pos = self.clean_tokens.shape
        self._acts: dict[str, dict[str, torch.Tensor]] = {}
        self._past: Any = None  # the corrupted run's KV cache (made on first use; False: none)
        with torch.no_grad():
            self.clean_logits = model.bridge(self.clean_tokens)  # [batch, pos, vocab]
            self.corrupt_logits = model.bridge(self.corrupt_tokens)
        self.clean_value = self._value(self.clean_logits)
        self.corrupt_value = self._value(self.corrupt_logits)
        #: sweeps need only the last position's logits when the metric reads only that
        self._last_only = isinstance(self.metric, Metric) and self.metric.pos == -1 and \
            _keeps_logits(model)
        per_row = self.batch * self.n_pos * model.cfg.d_vocab
        self.max_rows = max_rows or max(1, LOGIT_BUDGET // per_row)

    def _value(self, logits: torch.Tensor) -> float:
        out = torch.as_tensor(self.metric(logits))
        if out.numel() != 1:
            raise ValueError(f"The metric must return a scalar, got shape {tuple(out.shape)}; "
                             "average over the batch (e.g. metric(logits).mean()).")
        return float(out)

    # ---- labels and cells -----------------------------------------------------------------
    @property
    def str_tokens(self) -> tuple[list[str], list[str]]:
        """(clean, corrupt) token strings of the first prompt pair."""
        return (self.model.to_str_tokens(self.clean_tokens[0]),
                self.model.to_str_tokens(self.corrupt_tokens[0]))

    def n_heads(self, component: str) -> int:
        """Heads of `component` (K/V may have fewer under grouped-query attention)."""
        if component in ("head_k", "head_v"):
            return int(getattr(self.model.cfg, "n_key_value_heads", None) or self.model.cfg.n_heads)
        return int(self.model.cfg.n_heads)

    def grid_shape(self, component: str, positions: str) -> tuple[int, ...]:
        sizes = {"layer": self.model.cfg.n_layers, "pos": self.n_pos,
                 "head": self.n_heads(component)}
        return tuple(sizes[d] for d in result_dims(component, positions))

    def cells(self, component: str, positions: str = "each") -> list[Cell]:
        """Every cell of a sweep, in the row-major order of its result grid."""
        dims = result_dims(component, positions)
        grid = torch.cartesian_prod(*[torch.arange(n) for n in
                                      self.grid_shape(component, positions)])
        grid = grid.reshape(-1, len(dims)).tolist()
        return [Cell(component, **dict(zip(dims, row))) for row in grid]

    def check_cell(self, cell: Cell) -> Cell:
        """`cell` after checking its component and indices against this model and prompt."""
        kind = COMPONENTS[check_component(cell.component)][1]
        L = self.model.cfg.n_layers
        if not 0 <= cell.layer < L:
            raise ValueError(f"layer {cell.layer} is out of range: use 0 .. {L - 1}.")
        if cell.pos is not None and not 0 <= cell.pos < self.n_pos:
            raise ValueError(f"pos {cell.pos} is out of range: the prompt has {self.n_pos} "
                             f"tokens, so use 0 .. {self.n_pos - 1} (or None for all).")
        H = self.n_heads(cell.component)
        if kind == "resid" and cell.head is not None:
            raise ValueError(f"{cell.component} has no heads: leave head as None.")
        if kind != "resid" and (cell.head is None or not 0 <= cell.head < H):
            raise ValueError(f"{cell.component} needs a head in 0 .. {H - 1}, got {cell.head}.")
        return cell

    # ---- running --------------------------------------------------------------------------
    def clean_acts(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """{hook: Tensor[batch, ...]} of the clean run, cached across calls."""
        return self._acts_of("clean", names)

    def corrupt_acts(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """{hook: Tensor[batch, ...]} of the corrupted run, cached across calls."""
        return self._acts_of("corrupt", names)

    def _acts_of(self, which: str, names: Sequence[str]) -> dict[str, torch.Tensor]:
        store = self._acts.setdefault(which, {})
        missing = [n for n in names if n not in store]
        if missing:
            tokens = self.clean_tokens if which == "clean" else self.corrupt_tokens
            with torch.no_grad():
                _, cache = self.model.bridge.run_with_cache(tokens, names_filter=missing)
            store.update({n: cache[n] for n in missing})
        return {n: store[n] for n in names}

    def _hooks(self, rows: Sequence[Sequence[tuple[Cell, float]]], start: int = 0
               ) -> list[tuple[str, Callable]]:
        """Forward hooks that patch row r of a [rows * batch] run with rows[r]'s cells; the run
        covers positions start.. (the prefix comes from the corrupted run's KV cache)."""
        targets = [(r, cell, alpha, component_hook(cell.component, cell.layer))
                   for r, cells in enumerate(rows) for cell, alpha in cells]
        acts = self.clean_acts(list(dict.fromkeys(t[3] for t in targets)))
        by_hook: dict[str, tuple[str, list[int], list[torch.Tensor]]] = {}
        for r, cell, alpha, name in targets:
            kind = COMPONENTS[cell.component][1]
            w = _cell_weight(kind, acts[name].shape[1:-1], cell, alpha)
            _, idx, ws = by_hook.setdefault(name, (kind, [], []))
            idx.append(r)
            ws.append(w)
        dev, hooks = self.model.device, []
        for name, (kind, idx, ws) in by_hook.items():
            axis = POS_AXIS[kind]  # position axis of an activation without its batch axis
            clean = acts[name].narrow(axis + 1, start, acts[name].shape[axis + 1] - start)
            weight = torch.stack(ws).narrow(axis + 1, start, ws[0].shape[axis] - start)
            hooks.append((name, _interpolate_hook(clean, torch.tensor(idx, device=dev),
                                                  weight.to(dev), len(rows), self.batch)))
        return hooks

    def _forward(self, rows: Sequence[Sequence[tuple[Cell, float]]], start: int = 0,
                 last_only: bool = False) -> torch.Tensor:
        """Tensor[rows, batch, pos - start (1 if last_only), vocab]: the corrupted prompts with
        each row's patches, run from position `start` on top of the corrupted run's KV cache
        (positions before a patch are the corrupted run's: the model is causal)."""
        n = len(rows)
        tokens = self.corrupt_tokens[:, start:].repeat(n, 1)  # [rows * batch, pos - start]
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if last_only else {}
        with torch.no_grad():
            if start > 0:
                kwargs["past_key_values"] = self._prefix_cache(start, n)
            logits = self.model.bridge.run_with_hooks(tokens, fwd_hooks=self._hooks(rows, start),
                                                      **kwargs)
        return logits.reshape(n, self.batch, *logits.shape[1:])

    def _prefix_cache(self, start: int, n: int) -> Any:
        """The corrupted run's KV cache cut to `start` positions, tiled for n rows of the batch."""
        past = copy.deepcopy(self._past)
        past.crop(start - self.n_pos)  # negative: drop that many positions from the end
        past.batch_select_indices(torch.arange(self.batch, device=self.model.device).repeat(n))
        return past

    def _start(self, cells: Sequence[Cell]) -> int:
        """The first position any of `cells` touches (0 when one covers every position, or when
        the model cannot hand out its KV cache: then every run starts at 0)."""
        start = min((0 if c.pos is None else c.pos) for c in cells) if cells else 0
        if start > 0 and self._past is None:
            try:
                with torch.no_grad():
                    _, self._past = self.model.forward_with_cache(self.corrupt_tokens)
            except Exception:  # noqa: BLE001 - any bridge that cannot hand out its cache
                self._past = False
            if not all(hasattr(self._past, a) for a in ("crop", "batch_select_indices")):
                self._past = False
        return start if self._past else 0

    def _noop(self, component: str, positions: str) -> torch.Tensor:
        """Bool grid (as `grid_shape`): True where the clean and corrupted activations are
        identical, so patching changes nothing and the result is the corrupted run's metric."""
        kind = COMPONENTS[component][1]
        names = [component_hook(component, layer) for layer in range(self.model.cfg.n_layers)]
        clean, corrupt = self.clean_acts(names), self.corrupt_acts(names)
        grids = []
        for name in names:
            differs = (clean[name] != corrupt[name]).any(-1).any(0)  # [pos], [pos, head], [head, q]
            if kind == "pattern":
                differs = differs.T  # [q, head]
            grids.append(differs if positions == "each" else differs.any(0))
        return ~torch.stack(grids).cpu()

    def logits(self, cells: Sequence[Cell], alpha: float = 1.0) -> torch.Tensor:
        """Tensor[batch, pos, vocab]: the corrupted run with every cell set to
        alpha * clean + (1 - alpha) * corrupt (alpha 1 = clean)."""
        cells = [self.check_cell(c) for c in cells]
        if not cells:
            return self.corrupt_logits
        start = self._start(cells)
        tail = self._forward([[(c, float(alpha)) for c in cells]], start)[0]
        return torch.cat([self.corrupt_logits[:, :start], tail], 1)

    def run(self, cells: Sequence[Cell], alpha: float = 1.0, k: int = 5) -> PatchOutcome:
        """The metric (raw and on the 0..1 scale) and the top-k next tokens of the first prompt
        after patching `cells` by `alpha` (see `logits`)."""
        logits = self.logits(cells, alpha)
        value = self._value(logits)
        gap = self.clean_value - self.corrupt_value
        return PatchOutcome(
            cells=list(cells), alpha=float(alpha), value=value,
            normalized=(value - self.corrupt_value) / gap if abs(gap) > 1e-9 else None,
            top=self.top(logits, k))

    def alpha_curve(self, cells: Sequence[Cell], alphas: Sequence[float]) -> torch.Tensor:
        """Tensor[len(alphas)]: the metric with every cell set to alpha * clean + (1 - alpha) *
        corrupt, for each alpha: one batched forward pass, a row per alpha (each equals
        `run(cells, alpha).value`)."""
        cells = [self.check_cell(c) for c in cells]
        alphas = [float(a) for a in alphas]
        if not cells:
            return torch.full((len(alphas),), float(self.corrupt_value))
        start = self._start(cells)
        tail = self._forward([[(c, a) for c in cells] for a in alphas], start)  # [a, b, pos, v]
        head = self.corrupt_logits[:, :start]
        return torch.tensor([self._value(torch.cat([head, tail[r]], 1))
                             for r in range(len(alphas))])

    def top(self, logits: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
        """[(token, prob)]: the k likeliest tokens after the last position of prompt 0 of
        `logits` [batch, pos, vocab] (e.g. `clean_logits`)."""
        top = logits[0, -1].float().softmax(-1).topk(k)
        return [(self.model.tokenizer.decode([i]), float(p))
                for i, p in zip(top.indices.tolist(), top.values.tolist())]

    def value(self, logits: torch.Tensor) -> float:
        """The metric of one run's logits [batch, pos, vocab]."""
        return self._value(logits)

    def normalize(self, value: float | torch.Tensor) -> float | torch.Tensor:
        """0 = corrupt, 1 = clean; refuses a metric that cannot tell the two apart."""
        gap = self.clean_value - self.corrupt_value
        if abs(gap) < 1e-6 * max(1.0, abs(self.clean_value)):
            raise ValueError(f"The metric is {self.clean_value:.4g} on both the clean and the "
                             "corrupt prompt, so there is no 0..1 scale: pick a metric that "
                             "differs between them, or pass normalize=False.")
        return (value - self.corrupt_value) / gap

    # ---- sweeps ---------------------------------------------------------------------------
    def _patched(self, cells: list[Cell], noop: list[bool]):
        """(cell index, logits [batch, pos or 1, vocab]) of each cell patched alone (alpha 1),
        many cells per batched forward; cells in `noop` are skipped."""
        todo = sorted((i for i in range(len(cells)) if not noop[i]),
                      key=lambda i: self._start([cells[i]]))
        per = max(1, self.max_rows // self.batch)
        for at in range(0, len(todo), per):
            chunk = todo[at:at + per]
            logits = self._forward([[(cells[i], 1.0)] for i in chunk],
                                   self._start([cells[i] for i in chunk]), self._last_only)
            yield from zip(chunk, logits)

    def sweep(self, component: str, positions: str = "each", *,
              normalize: bool = True) -> PatchResult:
        """Exact activation patching of every cell, many cells per batched forward pass."""
        cells = self.cells(component, positions)
        values = torch.full((len(cells),), self.corrupt_value)
        noop = self._noop(component, positions).reshape(-1).tolist()
        for i, row in self._patched(cells, noop):
            values[i] = self._value(row)
        grid = values.reshape(self.grid_shape(component, positions))
        return self._result(grid, component, positions, normalize, "activation patching")

    def per_prompt(self, logits: torch.Tensor) -> torch.Tensor:
        """Tensor[batch]: the metric of each prompt of one run's logits (the metric must give
        per-prompt values: `iw.logit_diff`, `token_prob`, `kl_to`)."""
        if not isinstance(self.metric, Metric):
            raise ValueError("Per-prompt values need a metric that gives one per prompt "
                             "(iw.logit_diff, iw.token_prob or iw.kl_to), not a plain callable.")
        return self.metric.per_row(logits).detach().float().cpu()

    def sweep_per_prompt(self, component: str, positions: str = "each") -> torch.Tensor:
        """Tensor[batch, *grid]: the raw metric of each prompt with each cell patched (the
        per-prompt values whose mean `sweep` reports)."""
        cells = self.cells(component, positions)
        values = self.per_prompt(self.corrupt_logits)[:, None].repeat(1, len(cells))
        noop = self._noop(component, positions).reshape(-1).tolist()
        for i, row in self._patched(cells, noop):
            values[:, i] = self.per_prompt(row)
        return values.reshape(self.batch, *self.grid_shape(component, positions))

    def sweep_set(self, component: str, positions: str = "each", *, normalize: bool = True,
                  n_boot: int = 2000, seed: int = 0) -> PatchSweep:
        """`sweep` with a 95% interval per cell over this batch's prompt pairs (see
        `patching_sweep`); needs at least 2 pairs and a per-prompt metric."""
        if self.batch < 2:
            raise ValueError("An interval over prompt pairs needs at least 2 pairs; this "
                             "patcher holds 1.")
        raw = self.sweep_per_prompt(component, positions).double()  # [pair, *grid]
        shape = raw.shape[1:]
        flat = raw.reshape(self.batch, -1).numpy()
        c = self.per_prompt(self.clean_logits).double().numpy()
        k = self.per_prompt(self.corrupt_logits).double().numpy()
        if normalize:
            self.normalize(float(c.mean()))  # refuses clean and corrupt metrics that coincide
            num, den = flat - k[:, None], c - k

            def stat(w):
                return (w @ num) / (w @ den)[:, None]
        else:
            stat = mean_weights(flat)
        est = bootstrap(stat, self.batch, n_boot=n_boot, seed=seed)
        value = torch.tensor([e.value for e in est]).reshape(shape).float()
        low = torch.tensor([e.low for e in est]).reshape(shape).float()
        high = torch.tensor([e.high for e in est]).reshape(shape).float()
        if normalize:  # each pair on its own 0..1 scale, where its clean and corrupt differ
            gap = c - k
            ok = np.abs(gap) > 1e-6 * max(1.0, float(np.abs(c).max()))
            own = (flat[ok] - k[ok, None]) / gap[ok, None]
        else:
            own = flat
        spread = torch.from_numpy(np.std(own, axis=0, ddof=1) if len(own) > 1 else
                                  np.full(flat.shape[1], np.nan)).reshape(shape).float()
        result = self._result(value, component, positions, False, "activation patching")
        result.normalized = normalize
        return PatchSweep(result, low, high, raw.float(), torch.tensor(c).float(),
                          torch.tensor(k).float(), spread)

    def attribution(self, component: str, positions: str = "each", *,
                    normalize: bool = True) -> PatchResult:
        """Attribution patching: (clean - corrupt) . d metric / d activation at the corrupted
        run, for every cell at once (the clean activations are cached; 1 forward + 1 backward).
        """
        from transformer_lens.tools.analysis.attribution_patching import (
            cache_activation_and_gradient,
        )

        L = self.model.cfg.n_layers
        names = [component_hook(component, layer) for layer in range(L)]
        clean = self.clean_acts(names)
        # hook_embed, upstream of everything, makes the backward reach every hook: the bridge's
        # converted hooks (attn.hook_z, hook_q ...) only see a gradient when it passes through
        with torch.enable_grad():
            cache = cache_activation_and_gradient(self.model.bridge, self.corrupt_tokens,
                                                  self.metric,
                                                  names_filter=["hook_embed", *names])
        kind = COMPONENTS[component][1]
        est = []
        for name in names:
            grad = cache.gradients.get(name)
            if grad is None:  # the metric does not depend on this hook
                grad = torch.zeros_like(cache.activations[name])
            effect = ((clean[name] - cache.activations[name]) * grad).float()
            if kind == "pattern":
                effect = effect.sum(-1).transpose(1, 2)  # [batch, head, q, k] -> [batch, q, head]
            else:
                effect = effect.sum(-1)  # [batch, pos] or [batch, pos, head]
            effect = effect.sum(0)  # the metric is a batch mean, so this is the mean effect
            est.append(effect if positions == "each" else effect.sum(0))
        delta = torch.stack(est).cpu()  # estimated metric(patched) - metric(corrupt)
        return self._result(self.corrupt_value + delta, component, positions, normalize,
                            "attribution patching")

    def _result(self, raw: torch.Tensor, component: str, positions: str, normalize: bool,
                method: str) -> PatchResult:
        dims = result_dims(component, positions)
        clean_s, corrupt_s = self.str_tokens
        labels = {"layer": [str(i) for i in range(self.model.cfg.n_layers)],
                  "pos": [c if c == k else f"{c}/{k}" for c, k in zip(clean_s, corrupt_s)],
                  "head": [str(h) for h in range(self.n_heads(component))]}
        return PatchResult(
            values=self.normalize(raw) if normalize else raw,
            dims=dims, labels={d: labels[d] for d in dims}, component=component,
            positions=positions, metric=self.metric_name, clean_value=self.clean_value,
            corrupt_value=self.corrupt_value, normalized=normalize, method=method,
            clean_tokens=clean_s, corrupt_tokens=corrupt_s)


def _interpolate_hook(clean: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor, n: int,
                      batch: int) -> Callable:
    """A hook over act [n * batch, ...] that moves row rows[i] toward `clean` [batch, ...] by
    weight[i] [..., 1] (0 keeps the corrupt value, 1 gives the clean one)."""
    w = weight[:, None]  # [cells, 1, *shape, 1]: broadcast over the batch
    unique = len(rows.unique()) == len(rows)

    def hook(act: torch.Tensor, hook: Any = None) -> torch.Tensor:
        a = act.reshape(n, batch, *act.shape[1:]).clone()
        ww = w.to(a.dtype)
        if unique:  # one cell per row here: all rows at once
            sel = a[rows]
            a[rows] = sel + ww * (clean - sel)
        else:  # several cells in one row (a live selection): one after another
            for i, r in enumerate(rows.tolist()):
                a[r] = a[r] + ww[i] * (clean - a[r])
        return a.reshape(act.shape)

    return hook


def activation_patching(model: Model, clean: Inputs, corrupt: Inputs,
                        metric: Callable[[torch.Tensor], Any], *, component: str = "resid_pre",
                        positions: str = "each", normalize: bool = True,
                        max_rows: int | None = None,
                        prepend_bos: bool | None = None) -> PatchResult:
    """Patch each cell of `component` from the clean run into the corrupted run; read `metric`.

    Returns a `PatchResult` of shape [layer, pos] (resid_pre / attn_out / mlp_out), [layer, pos,
    head] (head_out = z, head_q/k/v, head_pattern by destination position) with
    ``positions="each"``; ``"all"`` patches every position at once: [layer] or [layer, head].
    `normalize=False` gives the raw metric, equal to TransformerLens's `get_act_patch_*`."""
    result_dims(component, positions)
    return Patcher(model, clean, corrupt, metric, max_rows=max_rows,
                   prepend_bos=prepend_bos).sweep(
        component, positions, normalize=normalize)


def attribution_patching(model: Model, clean: Inputs, corrupt: Inputs,
                         metric: Callable[[torch.Tensor], Any], *, component: str = "resid_pre",
                         positions: str = "each", normalize: bool = True,
                         prepend_bos: bool | None = None) -> PatchResult:
    """The gradient estimate of `activation_patching` (same arguments and result layout).

    Compare with the exact sweep through ``estimate.correlation(exact)``."""
    result_dims(component, positions)
    return Patcher(model, clean, corrupt, metric, prepend_bos=prepend_bos).attribution(
        component, positions,
                                                              normalize=normalize)


def _keeps_logits(model: Model) -> bool:
    """Whether the Hugging Face model behind the bridge takes `logits_to_keep` (unembed only the
    last positions)."""
    hf = getattr(model.bridge, "original_model", None)
    try:
        return "logits_to_keep" in inspect.signature(hf.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return False


@dataclass
class PatchSweep:
    """Activation patching over a set of prompt pairs: per cell the effect over the pairs and
    its 95% bootstrap interval (pairs resampled).

    result: a `PatchResult` of the set (the values are what `activation_patching` gives on the
    whole batch: with `normalize`, (mean patched - mean corrupt) / (mean clean - mean corrupt),
    the 0 = corrupt .. 1 = clean scale of the set). low, high: Tensor like result.values.
    per_prompt: Tensor[pair, *grid], each pair's raw metric with the cell patched;
    clean_values, corrupt_values: Tensor[pair]. spread: Tensor like values, the standard
    deviation over pairs of each pair's own normalized effect (NaN for pairs whose clean and
    corrupt metric coincide)."""

    result: PatchResult
    low: torch.Tensor
    high: torch.Tensor
    per_prompt: torch.Tensor
    clean_values: torch.Tensor
    corrupt_values: torch.Tensor
    spread: torch.Tensor

    @property
    def values(self) -> torch.Tensor:
        return self.result.values

    @property
    def n(self) -> int:
        return len(self.clean_values)

    def estimate(self, *index: int) -> Estimate:
        """The cell at `index` (e.g. layer, pos) as an `Estimate`."""
        return Estimate(float(self.values[index]), float(self.low[index]),
                        float(self.high[index]), self.n)

    def to_dataframe(self) -> pd.DataFrame:
        """`PatchResult.to_dataframe` with value_low, value_high, spread and value_ci columns."""
        df = self.result.to_dataframe()
        df["value_low"] = self.low.reshape(-1).numpy()
        df["value_high"] = self.high.reshape(-1).numpy()
        df["spread"] = self.spread.reshape(-1).numpy()
        df["value_ci"] = [str(Estimate(v, lo, hi, self.n)) for v, lo, hi in
                          zip(df["value"], df["value_low"], df["value_high"])]
        return df


def patching_sweep(model: Model, pairs: Sequence[tuple[Any, Any]] | tuple[Sequence[str],
                                                                          Sequence[str]],
                   metric: Metric, *, component: str = "resid_pre", positions: str = "each",
                   normalize: bool = True, n_boot: int = 2000, seed: int = 0,
                   max_rows: int | None = None) -> PatchSweep:
    """`activation_patching` over a set of prompt pairs, with a mean and an interval per cell.

    pairs: [(clean, corrupt), ...], or (clean prompts, corrupt prompts); every prompt of the
    set must have the same number of tokens (the cells are positions). metric: one that gives a
    value per prompt (`iw.logit_diff`, with one answer per prompt if they differ). The pairs are
    one batch (one sweep); the interval resamples pairs: with `normalize`, of the ratio of the
    mean patched-minus-corrupt to the mean clean-minus-corrupt (the statistic `result` holds),
    else of the mean raw metric (BCa, `uncertainty.bootstrap`)."""
    clean, corrupt = _split_pairs(pairs)
    if len(clean) < 2:
        raise ValueError("patching_sweep needs at least 2 prompt pairs to give an interval; "
                         "for one pair use activation_patching.")
    p = Patcher(model, clean, corrupt, metric, max_rows=max_rows)
    return p.sweep_set(component, positions, normalize=normalize, n_boot=n_boot, seed=seed)


def _split_pairs(pairs: Any) -> tuple[list[Any], list[Any]]:
    """(clean prompts, corrupt prompts) from [(clean, corrupt)] or (cleans, corrupts)."""
    if isinstance(pairs, tuple) and len(pairs) == 2 and all(
            isinstance(x, (list, tuple)) and not isinstance(x, str) for x in pairs) and \
            len(pairs[0]) == len(pairs[1]) and all(isinstance(x, str) for x in pairs[0]):
        return list(pairs[0]), list(pairs[1])
    pairs = list(pairs)
    if not pairs or not all(isinstance(q, (list, tuple)) and len(q) == 2 for q in pairs):
        raise ValueError("pairs must be [(clean, corrupt), ...] or (clean prompts, corrupt "
                         "prompts).")
    return [q[0] for q in pairs], [q[1] for q in pairs]
