"""GraphView: an attribution graph drawn on a canvas (js/src/widgets/graph_view.ts), with node
dashboards on hover, pinned nodes, supernodes, pruning and interventions answered by the kernel.

Synced up front (binary buffers): the shown nodes (kind, layer, position, feature, value,
influence, ids and token strings) and the edges as CSR (rows = targets, columns = sources), plus
the supernodes. Fetched on demand: a node's dashboard (top corpus activations of its transcoder
feature and its logit effects), re-pruning, interventions and grouping suggestions. Numbers come
from `circuits` (prune, intervene, grouping, dashboards)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import traitlets as t

from ..circuits.dashboards import scan_transcoder_layer, transcoder_logit_effect
from ..circuits.grouping import suggest_supernodes
from ..circuits.intervene import InterventionResult, intervene
from ._base import BaseWidget, request_handler
from ._codec import encode_array, encode_csr, encode_strings
from .neuron_view import _example

#: kind -> the code the browser reads (bias nodes are not drawn)
KINDS = {"embedding": 0, "feature": 1, "error": 2, "logit": 3}


def graph_payload(graph: Any, rev: int = 0) -> dict[str, Any]:
    """What the browser draws of `graph` (every node but the biases): per node, kind (uint8,
    see KINDS), layer, pos, feature (int32), value, influence, prob (float32), ids and tokens
    (packed strings); edges: CSR float32 [n, n], rows = targets, columns = sources (the
    adjacency restricted to those nodes); the prompt's tokens and the pruning figures."""
    n = graph.nodes
    rows = np.flatnonzero((n.kind != "bias").to_numpy())
    sub = n.iloc[rows]
    full = graph.parent or graph
    kept = graph.parent is not None
    return {
        "rev": rev, "n": len(rows), "n_layers": int(graph.n_layers),
        "n_pos": len(graph.str_tokens), "prompt": graph.prompt,
        "prompt_tokens": encode_strings(list(graph.str_tokens)),
        "kind": encode_array(sub.kind.map(KINDS).to_numpy(), "uint8"),
        "layer": encode_array(sub.layer.to_numpy(), "int32"),
        "pos": encode_array(sub.pos.to_numpy(), "int32"),
        "feature": encode_array(sub.feature.to_numpy(), "int32"),
        "value": encode_array(sub.value.to_numpy(np.float32), "float32"),
        "influence": encode_array(sub.influence.to_numpy(np.float32), "float32"),
        "prob": encode_array(sub.prob.to_numpy(np.float32), "float32"),
        "ids": encode_strings(sub.node_id.astype(str).tolist()),
        "tokens": encode_strings(sub.token.astype(str).tolist()),
        "edges": encode_csr(graph.adjacency[np.ix_(rows, rows)], "float32"),
        "prune": {"pruned": kept, "node_threshold": graph.node_threshold,
                  "edge_threshold": graph.edge_threshold,
                  "kept_node_influence": graph.kept_node_influence,
                  "kept_edge_influence": graph.kept_edge_influence,
                  "n_full": int((full.nodes.kind != "bias").sum())},
    }


def _threshold(name: str, v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 1, got {v!r}") from None
    if not 0.0 <= x <= 1.0:  # NaN fails too
        raise ValueError(f"{name} must be between 0 and 1, got {v!r}")
    return x


class GraphView(BaseWidget):
    """An attribution graph: layers bottom to top (token embeddings at the bottom, logits on
    top), positions left to right, edges coloured by sign with width and opacity by magnitude.

    Hover a node for its dashboard (a feature's top corpus activations, from a scan of its
    transcoder layer over `corpus`, and its top logit effects); click to pin it and list its
    input and output edges; shift-click or shift-drag to select nodes, then group them into a
    supernode (saved with the graph) or intervene: the kernel re-runs the real model with those
    features scaled by a factor (0 ablates; `circuits.intervene`) and shows the new top logits
    and each node's change beside the graph's linear estimate. The threshold sliders re-prune
    in the kernel (`AttributionGraph.prune`).

    model, transcoders: default to those the graph was made with (None for a loaded graph:
        then no dashboards of corpus examples, logit effects or interventions).
    corpus: documents for the dashboards' scans and the grouping's co-activations (default:
        300 documents of `iw.demo.corpus` for the demo model); scans: {layer: FeatureScan}
        made before. prune: show an unpruned graph pruned at (node_threshold, edge_threshold);
        False shows the graph as given."""

    _view = t.Unicode("graph_view").tag(sync=True)
    graph = t.Dict().tag(sync=True)  # graph_payload(...)
    supernodes = t.List(t.List()).tag(sync=True)  # [[name, [node_id, ...]], ...]
    can_intervene = t.Bool(False).tag(sync=True)
    can_suggest = t.Bool(False).tag(sync=True)

    def __init__(self, graph: Any, model: Any = None, transcoders: Any = None, *,
                 corpus: Iterable[str] | None = None, scans: Mapping[int, Any] | None = None,
                 prune: bool = True, node_threshold: float = 0.8, edge_threshold: float = 0.98,
                 k: int = 8, progress: bool = False) -> None:
        from ..circuits.graph import AttributionGraph

        if not isinstance(graph, AttributionGraph):
            raise ValueError(f"GraphView needs an AttributionGraph (iw.attribution_graph or "
                             f"iw.load_graph), got {type(graph).__name__}")
        self._model = model if model is not None else graph.model
        self._tcs = transcoders if transcoders is not None else graph.transcoders
        if (self._model is None) != (self._tcs is None):
            raise ValueError("Give both model and transcoders (or neither).")
        if corpus is None and self._model is not None and self._model.name == "demo":
            from ..demo import corpus as demo_corpus

            corpus = demo_corpus(300, seed=1)
        self._corpus = list(corpus) if corpus is not None else None
        self._scans: dict[int, Any] = dict(scans or {})
        self._k, self._progress = k, progress
        self.source = graph
        self.full = graph.parent or graph
        self._groups = graph.supernodes  # one dict, shared by every graph shown
        self.full.supernodes = self._groups
        self.shown = (graph.prune(node_threshold, edge_threshold)
                      if prune and graph.parent is None and graph.node_threshold is None
                      else graph)
        self.shown.supernodes = self._groups
        self.last: InterventionResult | None = None
        self._suggestions: list | None = None
        self._graph_rev = 0
        self._where: dict[str, int] | None = None
        super().__init__(can_intervene=self._model is not None,
                         can_suggest=self._model is not None and self._corpus is not None)
        self._sync()

    def _sync(self) -> None:
        with self.hold_sync():
            self.graph = graph_payload(self.shown, self._graph_rev)
            self.supernodes = [[k, list(v)] for k, v in self._groups.items()]

    # -- the Python API -------------------------------------------------------------------------
    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Any:
        """Show the graph re-pruned at these thresholds (as the sliders do); returns it."""
        nt = _threshold("node_threshold", node_threshold)
        et = _threshold("edge_threshold", edge_threshold)
        self.shown = self.full.prune(nt, et)
        self.shown.supernodes = self._groups
        self._graph_rev += 1
        self._sync()
        return self.shown

    def intervene(self, node_ids: Sequence[str], factor: float) -> InterventionResult:
        """Scale the features `node_ids` by `factor` (0 ablates) and re-run the real model with
        them clamped (errors kept): `circuits.intervene` on the graph shown."""
        if self._model is None:
            raise ValueError("this graph has no model to re-run (it was loaded from JSON): pass "
                             "model= and transcoders= to GraphView")
        if not node_ids:
            raise ValueError("select at least one feature node to intervene on")
        try:
            f = float(factor)
        except (TypeError, ValueError):
            raise ValueError(f"factor must be a number, got {factor!r}") from None
        if not math.isfinite(f):
            raise ValueError(f"factor must be a finite number, got {factor!r}")
        self.last = intervene(self._model, self._tcs, self.shown,
                              {str(n): f for n in node_ids}, mode="scale")
        return self.last

    def group(self, name: str, node_ids: Sequence[str]) -> None:
        """Make (or replace) supernode `name` of these nodes; saved with the graph's JSON."""
        name = str(name).strip()
        if not name:
            raise ValueError("a supernode needs a name")
        ids = [str(n) for n in node_ids]
        if not ids:
            raise ValueError("select the nodes to group first")
        self.full.index_of(ids)  # an error names unknown ids
        self._groups[name] = ids
        self._sync()

    def ungroup(self, name: str) -> None:
        if name not in self._groups:
            raise ValueError(f"no supernode {name!r}; there are: {sorted(self._groups)}")
        del self._groups[name]
        self._sync()

    def suggestions(self) -> list:
        """`circuits.grouping.suggest_supernodes` over the graph shown (computed once)."""
        if self._model is None or self._corpus is None:
            raise ValueError("grouping suggestions need the model, transcoders and a corpus: "
                             "pass corpus= to GraphView")
        if self._suggestions is None:
            self._suggestions = suggest_supernodes(self.shown, self._model, self._tcs,
                                                   self._corpus)
        return self._suggestions

    def scan(self, layer: int) -> Any:
        """The FeatureScan of transcoder layer `layer` over the corpus (made on first use)."""
        if layer not in self._scans:
            self._scans[layer] = scan_transcoder_layer(
                self._model, self._tcs, layer, self._corpus, k=max(self._k, 10),
                progress=self._progress)
        return self._scans[layer]

    def dashboard(self, node_id: str) -> dict[str, Any]:
        """A node's dashboard: its row (kind, layer, pos, feature, value, influence, token) and,
        for a feature, its top corpus activations ("examples") and logit effects."""
        if self._where is None:
            self._where = {n: i for i, n in enumerate(self.full.nodes.node_id)}
        if str(node_id) not in self._where:
            self.full.index_of(str(node_id))  # raises, naming the id
        r = self.full.nodes.iloc[self._where[str(node_id)]]
        out: dict[str, Any] = {
            "node_id": r.node_id, "kind": r.kind, "layer": int(r.layer), "pos": int(r.pos),
            "feature": int(r.feature), "value": _num(r.value), "influence": _num(r.influence),
            "token": str(r.token), "prob": float(r.prob), "examples": None,
            "logit_effect": None, "stats": None}
        if r.kind != "feature" or self._model is None:
            return out
        eff = transcoder_logit_effect(self._model, self._tcs, int(r.layer), int(r.feature),
                                      k=self._k)
        out["logit_effect"] = {"top": [[x.token, x.effect] for x in eff.top.itertuples()],
                               "bottom": [[x.token, x.effect] for x in eff.bottom.itertuples()]}
        if self._corpus is not None:
            scan = self.scan(int(r.layer))
            f = int(r.feature)
            out["examples"] = [_example(e) for e in scan.top_examples(f)[: self._k]]
            out["stats"] = {"density": float(scan.density[f]),
                            "max": float(scan.max_values()[f]), "n_docs": scan.n_docs,
                            "n_tokens": scan.n_tokens}
        return out

    # -- requests -------------------------------------------------------------------------------
    @request_handler("node")
    def _node(self, node_id: str) -> dict[str, Any]:
        return self.dashboard(node_id)

    @request_handler("prune")
    def _prune(self, node_threshold: float, edge_threshold: float) -> dict[str, Any]:
        g = self.prune(node_threshold, edge_threshold)
        return {"rev": self._graph_rev, "n": int((g.nodes.kind != "bias").sum()),
                "kept_node_influence": g.kept_node_influence}

    @request_handler("intervene")
    def _intervene(self, node_ids: list, factor: float) -> dict[str, Any]:
        if not isinstance(node_ids, list):
            raise ValueError("node_ids must be a list of node ids")
        res = self.intervene(node_ids, factor)
        ids = self.shown.nodes.node_id[self.shown.nodes.kind != "bias"].tolist()
        by = res.nodes.set_index("node_id")
        col = {c: by[c].reindex(ids).to_numpy(np.float32) for c in
               ("new_value", "change", "linear_estimate")}
        return {"rev": self._graph_rev, "node_ids": [str(n) for n in node_ids],
                "factor": float(factor), "top": [list(x) for x in res.top_logits],
                "top_before": [list(x) for x in res.top_logits_before], "notes": res.notes,
                "new_value": encode_array(col["new_value"]),
                "change": encode_array(col["change"]),
                "estimate": encode_array(col["linear_estimate"])}

    @request_handler("group")
    def _group(self, name: str, node_ids: list) -> dict[str, Any]:
        if not isinstance(node_ids, list):
            raise ValueError("node_ids must be a list of node ids")
        self.group(name, node_ids)
        return {}

    @request_handler("ungroup")
    def _ungroup(self, name: str) -> dict[str, Any]:
        self.ungroup(name)
        return {}

    @request_handler("suggest")
    def _suggest(self) -> list[dict[str, Any]]:
        return [{"name": s.name, "node_ids": s.node_ids, "top_tokens": s.top_tokens,
                 "cohesion": s.cohesion, "n_features": len(s.features)}
                for s in self.suggestions()]

    def static_answers(self) -> Iterator[tuple[str, dict[str, Any], Any]]:
        """The dashboard of every node shown, and the grouping suggestions."""
        for nid in self.shown.nodes.node_id[self.shown.nodes.kind != "bias"]:
            yield "node", {"node_id": str(nid)}, self.dashboard(str(nid))
        if self.can_suggest:
            yield "suggest", {}, self._suggest()

    @property
    def data(self) -> dict[str, Any]:
        """{"graph": the AttributionGraph shown, "supernodes", "last_intervention"}."""
        return {"graph": self.shown, "supernodes": dict(self._groups),
                "last_intervention": self.last}


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)
