"""`intervene`: set graph features to 0 or a multiple of their value, re-run the real model with
those transcoder features clamped (error terms kept, other features computed live), and set the
result beside the graph's linear estimate of the same change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from ..sae.transcoder_splice import transcoders_spliced

if TYPE_CHECKING:
    from ..model import Model
    from ..sae.transcoder import Transcoders
    from .graph import AttributionGraph


@dataclass
class InterventionResult:
    """What an intervention did.

    top_logits: [(token, prob)] of the intervened run at the last position (and
    `top_logits_before` of the real run); nodes: DataFrame over the graph's feature and logit
    nodes: node_id, kind, layer, pos, feature, value (before), new_value (real re-run), change,
    linear_estimate (the change the graph's direct effects predict, propagated through the
    unpruned graph); notes: remarks (e.g. a node the pruned graph does not show)."""

    top_logits: list[tuple[str, float]]
    top_logits_before: list[tuple[str, float]]
    nodes: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def disagreement(self) -> float:
        """Median over changed nodes of |real change - linear estimate| / |real change|."""
        n = self.nodes[self.nodes.change.abs() > 1e-6]
        if not len(n):
            return 0.0
        return float(np.median((n.change - n.linear_estimate).abs()
                               / n.change.abs().clip(lower=1e-6)))


def linear_estimate(graph: AttributionGraph, deltas: Mapping[int, float]) -> np.ndarray:
    """[n_nodes]: the change of every node's value that the graph's direct effects predict when
    the nodes in `deltas` (row index -> change of value) change by that much and stay there.
    Effects per unit of a source's activation are adjacency[t, s] / value[s], propagated in
    layer order; features outside the graph (inactive) stay inactive."""
    A = graph.adjacency.astype(np.float64)
    kind = graph.nodes.kind.to_numpy()
    v = graph.nodes.value.to_numpy().astype(np.float64)
    feat = kind == "feature"
    per_unit = np.zeros_like(A)
    per_unit[:, feat] = A[:, feat] / np.where(np.abs(v[feat]) > 0, v[feat], 1.0)
    fixed = np.zeros(len(v), bool)
    d0 = np.zeros(len(v))
    for i, dv in deltas.items():
        fixed[i], d0[i] = True, dv
    delta = d0.copy()
    for _ in range(graph.n_layers + 2):  # depth of the DAG in layers
        delta = np.where(fixed, d0, per_unit @ delta)
    return delta


def intervene(model: Model, transcoders: Transcoders, graph: AttributionGraph,
              changes: Mapping[str, float], *, mode: str = "scale") -> InterventionResult:
    """Re-run the real model with graph features changed: `changes` maps node ids to a factor
    (mode "scale": new activation = factor * value, 0 ablates) or to a value (mode "set").

    Error terms are kept (the real MLP outputs shift by the change of the reconstruction), every
    other feature is computed live, so downstream features respond as the model makes them."""
    if mode not in ("scale", "set"):
        raise ValueError(f"mode must be 'scale' or 'set', not {mode!r}.")
    full = graph.parent or graph
    notes = []
    idx = full.index_of(list(changes))
    shown = set(graph.nodes.node_id)
    edits, deltas = {}, {}
    for nid, i in zip(changes, idx):
        r = full.nodes.iloc[i]
        if r.kind != "feature":
            raise ValueError(f"Node {nid!r} is a {r.kind} node; interventions set transcoder "
                             "features.")
        new = float(changes[nid]) * float(r.value) if mode == "scale" else float(changes[nid])
        edits[(int(r.layer), int(r.pos), int(r.feature))] = new
        deltas[i] = new - float(r.value)
        if nid not in shown:
            notes.append(f"{nid} was pruned away: the graph shown no longer draws its effects "
                         "(they are still estimated over the unpruned graph).")
    tokens = torch.tensor(full.tokens)[None].to(model.device)
    cache: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        # the real run's logits are the graph's own (kept from the run it was made from)
        before = torch.as_tensor(full.real_logits).float() if full.real_logits is not None \
            else model.bridge(tokens)[0, -1].float()
        with transcoders_spliced(model, transcoders, edits=edits, use_error_term=True,
                                 cache=cache):
            after = model.bridge(tokens)[0, -1].float()
    est = linear_estimate(full, deltas)
    n = full.nodes
    kind = n.kind.to_numpy()
    rows = np.isin(kind, ["feature", "logit"])
    new_vals = np.full(len(n), np.nan)
    lyr, pos, feat = (n[c].to_numpy() for c in ("layer", "pos", "feature"))
    for layer in range(transcoders.n_layers):  # features: gathered from the re-run, per layer
        at = np.flatnonzero((kind == "feature") & (lyr == layer))
        if len(at):
            acts = cache[f"acts.{layer}"][0].float().cpu().numpy()  # [pos, d_tc]
            new_vals[at] = acts[pos[at], feat[at]]
    at = np.flatnonzero(kind == "logit")
    new_vals[at] = (after - after.mean()).cpu().numpy()[feat[at]]
    out = n.loc[rows, ["node_id", "kind", "layer", "pos", "feature", "value"]].copy()
    out["new_value"] = new_vals[rows]
    out["change"] = out.new_value - out.value
    out["linear_estimate"] = est[rows]
    out["intervened"] = out.node_id.isin(list(changes))
    return InterventionResult(_top(model, after), _top(model, before.to(after.device)),
                              out.reset_index(drop=True), notes)


def _top(model: Model, logits: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
    p = logits.softmax(-1).topk(k)
    return [(model.tokenizer.decode([int(i)]), float(v)) for i, v in zip(p.indices, p.values)]
