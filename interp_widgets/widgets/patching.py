"""PatchingView: activation-patching heatmaps with a live alpha slider (js/src/widgets/patching.ts).
Numbers come from `analysis.patching` (`Patcher`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import traitlets as t

from ..analysis.metrics import Metric, logit_diff
from ..analysis.patching import COMPONENTS, Cell, Patcher, PatchOutcome, PatchResult, PatchSweep
from ._base import BaseWidget, request_handler
from ._codec import encode_array

#: component -> positions: the grids shown by default (layer x pos, and layer x head)
DEFAULT_GRIDS = (("resid_pre", "each"), ("attn_out", "each"), ("mlp_out", "each"),
                 ("head_out", "all"))


class PatchingView(BaseWidget):
    """Heatmaps of activation patching (0 = corrupt, 1 = clean) per component, `layer x position`
    and `layer x head`, each beside its attribution-patching estimate and their correlation.

    Click cells to select them (several at once, across grids); the slider alpha then sets those
    activations to alpha * clean + (1 - alpha) * corrupt, and the metric and the top-5 next tokens
    are recomputed in the kernel; a curve shows the metric over alpha 0 .. 1 for the selection.
    The controls sit beside the grids and stay in view while they scroll. alpha outside [0, 1]
    is clipped, and the view says so.
    metric: logits -> scalar (default `logit_diff(answer, wrong)`)."""

    _view = t.Unicode("patching").tag(sync=True)
    clean_tokens = t.List(t.Unicode()).tag(sync=True)
    corrupt_tokens = t.List(t.Unicode()).tag(sync=True)
    metric_name = t.Unicode("").tag(sync=True)
    clean_value = t.Float(0.0).tag(sync=True)
    corrupt_value = t.Float(0.0).tag(sync=True)
    #: [{"component", "positions", "rows", "cols", "values": float32 [rows, cols] (0..1 scale),
    #:   "estimate": float32 [rows, cols], "correlation"; with several prompt pairs also "low",
    #:   "high": float32 [rows, cols], the 95% interval over pairs, and "n_pairs"}]
    grids = t.List(t.Dict()).tag(sync=True)
    top_clean = t.List(t.List()).tag(sync=True)  # [[token, prob]] after the clean prompt
    top_corrupt = t.List(t.List()).tag(sync=True)

    def __init__(self, model: Any, clean: Any, corrupt: Any, answer: Any = None,
                 wrong: Any = None, *, metric: Any = None,
                 grids: Sequence[tuple[str, str]] = DEFAULT_GRIDS) -> None:
        if metric is None:
            if answer is None or wrong is None:
                raise ValueError("Give answer and wrong tokens (e.g. ' Mary', ' John'), or a "
                                 "metric (logits -> scalar).")
            metric = logit_diff(answer, wrong)
        super().__init__()
        self.patcher = Patcher(model, clean, corrupt, metric)
        self.results: dict[str, tuple[PatchResult, PatchResult]] = {}
        self.last: PatchOutcome | None = None
        p = self.patcher
        synced = []
        #: with a set of prompt pairs, each exact cell carries its interval over the pairs
        self.sets: dict[str, PatchSweep] = {}
        over_pairs = p.batch >= 2 and isinstance(p.metric, Metric)
        for component, positions in grids:
            if over_pairs:
                self.sets[component] = p.sweep_set(component, positions)
                exact = self.sets[component].result
            else:
                exact = p.sweep(component, positions)
            estimate = p.attribution(component, positions)
            self.results[component] = (exact, estimate)
            cols = exact.dims[-1] if len(exact.dims) > 1 else None
            n_rows = len(exact.labels["layer"])
            synced.append({
                "component": component, "positions": positions,
                "rows": [f"L{x}" for x in exact.labels["layer"]],
                "cols": [f"H{x}" for x in exact.labels["head"]] if cols == "head"
                else list(range(p.n_pos)),
                "col_kind": cols or "none",
                "values": encode_array(exact.values.reshape(len(exact.labels["layer"]), -1)),
                "estimate": encode_array(estimate.values.reshape(len(exact.labels["layer"]), -1)),
                "correlation": estimate.correlation(exact),
                **({"low": encode_array(self.sets[component].low.reshape(n_rows, -1)),
                    "high": encode_array(self.sets[component].high.reshape(n_rows, -1)),
                    "n_pairs": p.batch} if over_pairs else {}),
            })
        clean_s, corrupt_s = p.str_tokens
        with self.hold_sync():
            self.clean_tokens, self.corrupt_tokens = clean_s, corrupt_s
            self.metric_name = p.metric_name
            self.clean_value, self.corrupt_value = p.clean_value, p.corrupt_value
            self.top_clean = [list(x) for x in p.top(p.clean_logits)]
            self.top_corrupt = [list(x) for x in p.top(p.corrupt_logits)]
            self.grids = synced

    def patch(self, cells: Sequence[Cell | Sequence[Any]], alpha: float) -> dict[str, Any]:
        """Patch `cells` (Cell or [component, layer, pos, head]) by alpha, clipped to [0, 1].
        Returns what the view shows: {"alpha", "requested_alpha", "clipped", "value",
        "normalized", "top": [[token, prob]]}."""
        try:
            requested = float(alpha)
        except (TypeError, ValueError):
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
        if requested != requested:  # NaN
            raise ValueError("alpha is NaN: give a number in [0, 1]")
        a = min(1.0, max(0.0, requested))
        out = self.patcher.run([_cell(c) for c in cells], a)
        self.last = out
        return {"alpha": a, "requested_alpha": requested, "clipped": a != requested,
                "value": out.value, "normalized": out.normalized,
                "top": [[tok, prob] for tok, prob in out.top]}

    def curve(self, cells: Sequence[Cell | Sequence[Any]], n: int = 11) -> dict[str, Any]:
        """The metric over alpha = 0 .. 1 (n points) with `cells` patched (`Patcher.alpha_curve`):
        {"alphas", "values", "normalized" (None when clean and corrupt tie)}, float32 arrays."""
        if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= 101:
            raise ValueError(f"n must be an integer in 2 .. 101 (points on the curve), got {n!r}")
        alphas = torch.linspace(0, 1, n)
        values = self.patcher.alpha_curve([_cell(c) for c in cells], alphas.tolist())
        gap = self.patcher.clean_value - self.patcher.corrupt_value
        norm = (values - self.patcher.corrupt_value) / gap if abs(gap) > 1e-9 else None
        return {"alphas": encode_array(alphas), "values": encode_array(values),
                "normalized": None if norm is None else encode_array(norm)}

    @request_handler("patch")
    def _patch(self, cells: list, alpha: float) -> dict[str, Any]:
        if not isinstance(cells, list):
            raise ValueError("cells must be a list of [component, layer, pos, head]")
        return self.patch(cells, alpha)

    @request_handler("curve")
    def _curve(self, cells: list, n: int = 11) -> dict[str, Any]:
        if not isinstance(cells, list):
            raise ValueError("cells must be a list of [component, layer, pos, head]")
        return self.curve(cells, n)

    @property
    def data(self) -> dict[str, tuple[PatchResult, PatchResult]]:
        """{component: (activation patching, attribution patching)} as `PatchResult`s."""
        return self.results


def _cell(c: Cell | Sequence[Any]) -> Cell:
    """A Cell from [component, layer, pos, head] (pos/head may be None)."""
    if isinstance(c, Cell):
        return c
    if not isinstance(c, (list, tuple)) or len(c) != 4:
        raise ValueError(f"a cell is [component, layer, pos, head], got {c!r}")
    comp, layer, pos, head = c
    if comp not in COMPONENTS:
        raise ValueError(f"unknown component {comp!r}; use one of {', '.join(COMPONENTS)}")
    for name, v in (("layer", layer), ("pos", pos), ("head", head)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValueError(f"{name} must be an integer or null, got {v!r}")
    return Cell(comp, layer, pos, head)
