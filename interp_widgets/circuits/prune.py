"""Influence on the logits and pruning, with circuit-tracer's definitions (its `graph.py`):

- normalized matrix: |A| with each row scaled to sum 1;
- node influence: w @ (N + N^2 + ...), w = the logit nodes' probabilities;
- node pruning: keep the nodes with the largest influence until they hold `node_threshold`
  of the total; token embeddings and logits are always kept;
- edge scores: the normalized pruned matrix times (influence + w) of each target row; keep the
  largest until they hold `edge_threshold` of the total;
- then, repeatedly, drop features, errors and biases with no kept outgoing edge, and features
  with no kept incoming edge.
Written with numpy (float64) because the kept library for this, circuit-tracer, pins an older
TransformerLens than ours.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def normalize(A: np.ndarray) -> np.ndarray:
    """|A| with rows summing to 1 (rows of zeros stay zero). A: [n, n] (target, source)."""
    N = np.abs(A).astype(np.float64)
    return N / np.maximum(N.sum(axis=1, keepdims=True), 1e-10)


def influence(N: np.ndarray, w: np.ndarray, max_iter: int = 1000) -> np.ndarray:
    """[n]: w @ (N + N^2 + ...) for a normalized DAG matrix N [n, n] and weights w [n]."""
    cur = w @ N
    total = cur.copy()
    for _ in range(max_iter):
        cur = cur @ N
        if not cur.any():
            return total
        total += cur
    raise RuntimeError(f"Influence did not converge in {max_iter} steps: the graph has a cycle.")


def threshold_for(scores: np.ndarray, fraction: float) -> float:
    """The smallest score among the top scores that together hold `fraction` of the total."""
    s = np.sort(scores.reshape(-1))[::-1]
    total = s.sum()
    if total <= 0:
        return np.inf
    idx = int(np.searchsorted(np.cumsum(s) / total, fraction))
    return float(s[min(idx, len(s) - 1)])


class Pruned(NamedTuple):
    node_mask: np.ndarray        # [n] bool
    edge_mask: np.ndarray        # [n, n] bool
    node_influence: np.ndarray   # [n] influence of each node in the unpruned graph
    kept_node_influence: float   # fraction of the non-logit nodes' influence kept
    kept_edge_influence: float   # fraction of the edge scores kept


def prune(A: np.ndarray, logit_weights: np.ndarray, always: np.ndarray, need_out: np.ndarray,
          need_in: np.ndarray, node_threshold: float = 0.8,
          edge_threshold: float = 0.98) -> Pruned:
    """Masks of the nodes and edges kept (see the module docstring).

    always: [n] bool, nodes always kept (embeddings, logits); need_out / need_in: [n] bool,
    nodes dropped without a kept outgoing / incoming edge."""
    for name, t in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {t}.")
    node_inf = influence(normalize(A), logit_weights)
    node_mask = (node_inf >= threshold_for(node_inf, node_threshold)) | always
    P = A * node_mask[:, None] * node_mask[None, :]
    Np = normalize(P)
    edge_scores = Np * (influence(Np, logit_weights) + logit_weights)[:, None]
    edge_mask = edge_scores >= threshold_for(edge_scores, edge_threshold)
    edge_mask &= P != 0
    while True:
        old = node_mask.copy()
        node_mask &= ~need_out | edge_mask.any(axis=0)
        node_mask &= ~need_in | edge_mask.any(axis=1)
        node_mask |= always
        edge_mask &= node_mask[:, None] & node_mask[None, :]
        if (old == node_mask).all():
            break
    src = logit_weights == 0  # every node but the logits
    total = node_inf[src].sum()
    kept_nodes = float(node_inf[src & node_mask].sum() / total) if total > 0 else 1.0
    total_e = edge_scores.sum()
    kept_edges = float(edge_scores[edge_mask].sum() / total_e) if total_e > 0 else 1.0
    return Pruned(node_mask, edge_mask, node_inf, kept_nodes, kept_edges)
