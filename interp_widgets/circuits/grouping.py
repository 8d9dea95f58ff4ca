"""Supernode suggestions: cluster a graph's features by what they write (decoder-direction
cosine) and when they fire (co-activation over a corpus), and label each group by the tokens
its features fire on most.

    sim(i, j) = weight * cos(direction_i, direction_j) + (1 - weight) * coact(i, j)
    coact(i, j) = cosine of the two features' activations over the corpus tokens (activations
                  are >= 0, so 0 = never together, 1 = always in proportion)

Groups are the clusters of average-linkage agglomerative clustering (scikit-learn) on the
distance 1 - sim, cut where the average similarity falls below `threshold`. A feature that sits
at several positions of the prompt is one feature here: all its nodes go to its group.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..analysis.corpus import iter_corpus
from .dashboards import TranscoderLayer

if TYPE_CHECKING:
    from ..model import Model
    from ..sae.transcoder import Transcoders
    from .graph import AttributionGraph


@dataclass
class Suggestion:
    """A suggested supernode: name (its label), node_ids, features [(layer, feature)],
    top_tokens (the tokens its features fire on most), cohesion (mean pairwise similarity)."""

    name: str
    node_ids: list[str]
    features: list[tuple[int, int]]
    top_tokens: list[str]
    cohesion: float


def feature_activations(model: Model, transcoders: Transcoders,
                        features: Sequence[tuple[int, int]],
                        corpus: Iterable[str | Sequence[int]], *, batch_size: int = 16
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(acts float32 [n_tokens, n_features], token ids int64 [n_tokens]): the activations of the
    given (layer, feature) pairs at every corpus token (BOS and padding left out)."""
    if not len(features):
        raise ValueError("No features given: pass (layer, feature) pairs.")
    layers = sorted({int(lyr) for lyr, _ in features})
    hooks = [transcoders.input_hook_name(lyr) for lyr in layers]
    cols = {lyr: [i for i, (l2, _) in enumerate(features) if l2 == lyr] for lyr in layers}
    ids = {lyr: torch.tensor([int(features[i][1]) for i in cols[lyr]]) for lyr in layers}
    out, toks = [], []
    for batch in iter_corpus(model, corpus, batch_size):
        if not batch.rows:
            continue
        run = model.run([r for _, r in batch.rows], names=hooks, prepend_bos=False)
        valid = run.attention_mask.bool().clone()
        valid[:, 0] = False
        block = torch.zeros(int(valid.sum()), len(features))
        with torch.no_grad():
            for lyr, hook in zip(layers, hooks):
                a = transcoders.encode(lyr, run.cache[hook]).float()[valid]  # [tokens, d_tc]
                block[:, cols[lyr]] = a[:, ids[lyr].to(a.device)].cpu()
        out.append(block)
        toks.append(run.tokens[valid].cpu())
    if not out:
        raise ValueError("The corpus gave no tokens: pass documents with text in them.")
    return torch.cat(out).numpy(), torch.cat(toks).numpy()


def similarity(directions: np.ndarray, acts: np.ndarray | None, weight: float = 0.5
               ) -> np.ndarray:
    """[n, n]: weight * decoder cosine + (1 - weight) * co-activation cosine (see the module
    docstring). directions [n, d]; acts [n_tokens, n] or None (then directions alone)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be between 0 and 1, got {weight}.")
    d = np.asarray(directions, dtype=np.float64)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    cos = d @ d.T
    if acts is None:
        return cos
    a = np.asarray(acts, dtype=np.float64)
    if a.shape[1] != d.shape[0]:
        raise ValueError(f"acts has {a.shape[1]} feature columns but there are {d.shape[0]} "
                         "directions.")
    a = a / np.maximum(np.linalg.norm(a, axis=0, keepdims=True), 1e-12)
    return weight * cos + (1 - weight) * (a.T @ a)


def cluster_features(directions: np.ndarray, acts: np.ndarray | None = None, *,
                     weight: float = 0.5, threshold: float = 0.5,
                     n_groups: int | None = None) -> np.ndarray:
    """int [n]: a cluster label per feature (average linkage on 1 - `similarity`), cut at
    average similarity `threshold`, or into `n_groups` clusters when that is given."""
    from sklearn.cluster import AgglomerativeClustering

    sim = similarity(directions, acts, weight)
    n = len(sim)
    if n < 2:
        return np.zeros(n, dtype=int)
    dist = np.clip(1.0 - sim, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    dist = (dist + dist.T) / 2
    if n_groups is not None:
        algo = AgglomerativeClustering(n_clusters=min(int(n_groups), n), metric="precomputed",
                                       linkage="average")
    else:
        algo = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                                       distance_threshold=1.0 - threshold)
    return algo.fit_predict(dist)


def suggest_supernodes(graph: AttributionGraph, model: Model, transcoders: Transcoders,
                       corpus: Iterable[str | Sequence[int]], *, weight: float = 0.5,
                       threshold: float = 0.5, min_features: int = 2, n_tokens: int = 3,
                       batch_size: int = 16) -> list[Suggestion]:
    """Suggested supernodes over the feature nodes of `graph` (see the module docstring),
    largest first; groups of fewer than `min_features` distinct features are left out. Each is
    named by its `n_tokens` top tokens: those where its features, each scaled to its own
    maximum, add up to the most activation over `corpus`."""
    feats = graph.nodes[graph.nodes.kind == "feature"]
    pairs = sorted({(int(r.layer), int(r.feature)) for r in feats.itertuples(index=False)})
    if len(pairs) < max(2, min_features):
        return []
    with torch.no_grad():
        dirs = np.stack([TranscoderLayer(transcoders, lyr).feature_directions()[f]
                         .detach().float().cpu().numpy() for lyr, f in pairs])
    acts, tok = feature_activations(model, transcoders, pairs, corpus, batch_size=batch_size)
    labels = cluster_features(dirs, acts, weight=weight, threshold=threshold)
    sim = similarity(dirs, acts, weight)
    scaled = acts / np.maximum(acts.max(axis=0, keepdims=True), 1e-12)
    out, names = [], set()
    for lab in np.unique(labels):
        members = np.flatnonzero(labels == lab)
        if len(members) < min_features:
            continue
        score = np.bincount(tok, weights=scaled[:, members].sum(1), minlength=int(tok.max()) + 1)
        top = [model.tokenizer.decode([int(i)]) for i in np.argsort(-score)[:n_tokens]
               if score[i] > 0]
        name = " / ".join(repr(t) for t in top) or f"group {lab}"
        base, k = name, 2
        while name in names:
            name, k = f"{base} ({k})", k + 1
        names.add(name)
        chosen = {pairs[i] for i in members}
        ids = [r.node_id for r in feats.itertuples(index=False)
               if (int(r.layer), int(r.feature)) in chosen]
        sub = sim[np.ix_(members, members)]
        cohesion = float((sub.sum() - np.trace(sub)) / (len(members) * (len(members) - 1)))
        out.append(Suggestion(name, ids, [pairs[i] for i in members], top, cohesion))
    out.sort(key=lambda s: (-len(s.features), -s.cohesion))
    return out
