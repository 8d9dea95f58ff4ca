"""`AttributionGraph`: nodes (a DataFrame), the adjacency matrix, pruning, supernodes, and the
graph JSON that circuit-tracer and Neuronpedia read (`to_json` / `load_graph`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .prune import influence, normalize, prune

SCHEMA_VERSION = 1  # circuit-tracer's metadata.schema_version that this writes and reads
IW_SCHEMA_VERSION = 1  # the version of our own "iw" block
_FEATURE_TYPE = {"feature": "cross layer transcoder", "error": "mlp reconstruction error",
                 "embedding": "embedding", "logit": "logit"}
_KIND = {v: k for k, v in _FEATURE_TYPE.items()}


class GraphFormatError(ValueError):
    """Not a graph JSON this version can read."""


@dataclass
class AttributionGraph:
    """A prompt's attribution graph.

    nodes: DataFrame, one row per node, its index the row/column of `adjacency`: node_id, kind
        ("feature" | "error" | "embedding" | "bias" | "logit"), layer (-1 for embeddings, n_layers
        for logits), pos (-1 for biases), feature (feature id; token id for embeddings and
        logits), value (feature activation = pre-activation; demeaned logit; for errors and
        embeddings the norm of the vector they add; NaN for biases), influence, token, prob.
    adjacency: ndarray [n_nodes, n_nodes] float32, adjacency[target, source] = direct effect.
    supernodes: {name: [node_id, ...]}, saved with the graph (in the JSON's
        qParams.supernodes as [[name, node_id, ...], ...], Neuronpedia's layout).
    Completeness: for every node with inputs, adjacency[i].sum() == nodes.value[i]."""

    nodes: pd.DataFrame
    adjacency: np.ndarray
    tokens: list[int]
    str_tokens: list[str]
    prompt: str
    logit_ids: list[int]
    logit_probs: list[float]
    n_layers: int
    model_name: str | None = None
    transcoder_kind: str | None = None
    real_logits: np.ndarray | None = field(default=None, repr=False)
    replacement_logits: np.ndarray | None = field(default=None, repr=False)
    seconds: float | None = None
    supernodes: dict[str, list[str]] = field(default_factory=dict)
    node_threshold: float | None = None
    edge_threshold: float | None = None
    kept_node_influence: float | None = None
    kept_edge_influence: float | None = None
    parent: AttributionGraph | None = field(default=None, repr=False)
    #: the model and transcoders the graph was made with (not saved in the JSON), so that
    #: `GraphView(g)` can fetch dashboards and intervene; None for a loaded graph
    model: Any = field(default=None, repr=False, compare=False)
    transcoders: Any = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        counts = self.nodes.kind.value_counts().to_dict()
        pruned = "" if self.node_threshold is None else (
            f", pruned at {self.node_threshold}/{self.edge_threshold}: kept "
            f"{self.kept_node_influence:.1%} of node influence")
        return (f"AttributionGraph({self.prompt!r}: {len(self.nodes)} nodes {counts}, "
                f"{int((self.adjacency != 0).sum())} edges{pruned})")

    # ---- structure ----------------------------------------------------------------------------

    @property
    def logit_weights(self) -> np.ndarray:
        """[n_nodes]: each logit node's probability, 0 elsewhere."""
        w = np.zeros(len(self.nodes))
        w[(self.nodes.kind == "logit").to_numpy()] = self.nodes.loc[self.nodes.kind == "logit",
                                                                    "prob"].to_numpy()
        return w

    def compute_influence(self) -> None:
        """Fill `nodes.influence` (each node's influence on the logits, circuit-tracer's)."""
        self.nodes["influence"] = influence(normalize(self.adjacency), self.logit_weights)

    def index_of(self, node_ids: list[str] | str) -> list[int]:
        """Row indices of node ids (an error names the unknown ones)."""
        ids = [node_ids] if isinstance(node_ids, str) else list(node_ids)
        where = {n: i for i, n in enumerate(self.nodes.node_id)}
        bad = [n for n in ids if n not in where]
        if bad:
            raise KeyError(f"No node(s) {bad[:5]} in this graph; ids look like "
                           f"{list(self.nodes.node_id[:3])}.")
        return [where[n] for n in ids]

    def completeness_error(self) -> float:
        """Max over nodes with inputs of |sum of incoming edges - value| / max(|value|, 1e-6)."""
        has_in = self.nodes.kind.isin(["feature", "logit"]).to_numpy()
        got = self.adjacency[has_in].astype(np.float64).sum(1)
        want = self.nodes.value.to_numpy()[has_in]
        return float((np.abs(got - want) / np.maximum(np.abs(want), 1e-6)).max()) \
            if has_in.any() else 0.0

    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> AttributionGraph:
        """A new graph with the nodes and edges that carry most influence on the logits
        (circuit-tracer's definitions, see `circuits.prune`); `kept_node_influence` and
        `kept_edge_influence` say what fraction was kept. Pruning a pruned graph starts again
        from its unpruned parent."""
        base = self.parent or self
        kind = base.nodes.kind.to_numpy()
        always = np.isin(kind, ["embedding", "logit"])
        need_out = np.isin(kind, ["feature", "error", "bias"])
        need_in = kind == "feature"
        res = prune(base.adjacency, base.logit_weights, always, need_out, need_in,
                    node_threshold, edge_threshold)
        keep = np.flatnonzero(res.node_mask)
        A = (base.adjacency * res.edge_mask)[np.ix_(keep, keep)]
        nodes = base.nodes.iloc[keep].copy()
        nodes["influence"] = res.node_influence[keep]
        nodes["orig_index"] = keep
        nodes = nodes.reset_index(drop=True)
        return replace(base, nodes=nodes, adjacency=A.astype(np.float32),
                       supernodes=dict(self.supernodes), node_threshold=node_threshold,
                       edge_threshold=edge_threshold,
                       kept_node_influence=res.kept_node_influence,
                       kept_edge_influence=res.kept_edge_influence, parent=base)

    def edges(self) -> pd.DataFrame:
        """The nonzero edges as a DataFrame: source, target (node ids), weight."""
        t, s = np.nonzero(self.adjacency)
        ids = self.nodes.node_id.to_numpy()
        return pd.DataFrame({"source": ids[s], "target": ids[t], "weight": self.adjacency[t, s]})

    def add_supernode(self, name: str, node_ids: list[str]) -> None:
        """Group nodes under `name` (kept in the JSON's qParams.supernodes)."""
        self.index_of(node_ids)
        self.supernodes[name] = list(node_ids)

    # ---- JSON ---------------------------------------------------------------------------------

    def to_json(self, path: str | Path | None = None, *, slug: str | None = None) -> dict[str, Any]:
        """The graph in circuit-tracer / Neuronpedia's JSON (metadata, qParams, nodes, links;
        bias nodes and our extra fields in an "iw" block that those tools ignore). Written
        atomically to `path` if given; returns the dict."""
        n = self.nodes
        is_bias = (n.kind == "bias").to_numpy()
        total = float(n.influence.sum()) or 1.0
        order = np.argsort(-n.influence.to_numpy(), kind="stable")
        cum = np.empty(len(n))
        cum[order] = np.cumsum(n.influence.to_numpy()[order]) / total
        out_nodes = []
        for i, r in enumerate(n.itertuples(index=False)):
            if is_bias[i]:
                continue
            layer = {"embedding": "E", "logit": str(self.n_layers + 1)}.get(r.kind, str(r.layer))
            node = {"node_id": r.node_id, "jsNodeId": r.node_id,
                    "feature": int(r.feature) if r.kind != "embedding" else int(r.pos),
                    "layer": layer, "ctx_idx": int(r.pos), "feature_type": _FEATURE_TYPE[r.kind],
                    "token_prob": float(r.prob), "is_target_logit": bool(
                        r.kind == "logit" and r.feature == self.logit_ids[0]),
                    "run_idx": 0, "reverse_ctx_idx": 0, "clerp": _clerp(r),
                    "influence": float(cum[i]),
                    "activation": float(r.value) if r.kind == "feature" else None,
                    "iw_value": _num(r.value), "iw_influence": float(r.influence),
                    "iw_token_id": int(r.feature) if r.kind == "embedding" else None}
            out_nodes.append(node)
        e = self.edges()
        bias_ids = set(n.node_id[is_bias])
        from_bias = e.source.isin(bias_ids).to_numpy()
        links = [{"source": s, "target": t, "weight": float(w)}
                 for s, t, w in e[~from_bias].itertuples(index=False)]
        data = {
            "metadata": {
                "slug": slug or "interp-widgets-graph", "scan": f"{self.model_name}/"
                f"interp_widgets-{self.transcoder_kind}", "transcoder_list": [],
                "prompt_tokens": list(self.str_tokens), "prompt": self.prompt,
                "node_threshold": self.node_threshold, "schema_version": SCHEMA_VERSION,
                "info": {"creator_name": "interp_widgets", "generator": {"name": "interp_widgets"}},
            },
            "qParams": {"pinnedIds": [], "supernodes": [[k, *v] for k, v in
                                                        self.supernodes.items()],
                        "linkType": "both", "clickedId": "", "sg_pos": ""},
            "nodes": out_nodes,
            "links": links,
            "iw": {"schema_version": IW_SCHEMA_VERSION, "n_layers": self.n_layers,
                   "order": n.node_id.tolist(),
                   "tokens": list(self.tokens), "logit_ids": list(self.logit_ids),
                   "logit_probs": list(self.logit_probs), "model_name": self.model_name,
                   "transcoder_kind": self.transcoder_kind,
                   "edge_threshold": self.edge_threshold,
                   "kept_node_influence": self.kept_node_influence,
                   "kept_edge_influence": self.kept_edge_influence,
                   "bias_nodes": [{"node_id": r.node_id, "layer": int(r.layer),
                                   "influence": float(r.influence)}
                                  for r in n[is_bias].itertuples(index=False)],
                   "bias_links": [{"source": s, "target": t, "weight": float(w)}
                                  for s, t, w in e[from_bias].itertuples(index=False)]},
        }
        if path is not None:
            from ..sae.io import _atomic_write

            p = Path(path).expanduser()
            text = json.dumps(data)
            _atomic_write(p, lambda tmp: Path(tmp).write_text(text))
        return data


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def _clerp(r: Any) -> str:
    if r.kind == "logit":
        return f'Output "{r.token}" (p={r.prob:.3f})'
    if r.kind == "embedding":
        return f'Token "{r.token}"'
    if r.kind == "error":
        return f"MLP {r.layer} error at {r.pos}"
    return ""


def load_graph(path: str | Path | dict[str, Any]) -> AttributionGraph:
    """Read a graph JSON written by `AttributionGraph.to_json` (or by circuit-tracer: then only
    what its format holds, without biases). Unknown schema versions are refused."""
    data = path if isinstance(path, dict) else json.loads(Path(path).expanduser().read_text())
    if not isinstance(data, dict) or "nodes" not in data or "links" not in data:
        raise GraphFormatError(f"{path}: not a graph JSON (it needs 'metadata', 'nodes' and "
                               "'links').")
    meta = data.get("metadata") or {}
    version = meta.get("schema_version", 1)
    if version != SCHEMA_VERSION:
        raise GraphFormatError(f"{path}: graph schema_version {version!r} is unknown; this "
                               f"interp_widgets reads schema_version {SCHEMA_VERSION}.")
    iw = data.get("iw") or {}
    if iw and iw.get("schema_version") != IW_SCHEMA_VERSION:
        raise GraphFormatError(f"{path}: interp_widgets block schema_version "
                               f"{iw.get('schema_version')!r} is unknown; this version reads "
                               f"{IW_SCHEMA_VERSION}.")
    n_layers = iw.get("n_layers") or max((int(n["layer"]) for n in data["nodes"]
                                          if n["feature_type"] == "logit"), default=1) - 1
    rows = []
    for nd in data["nodes"]:
        kind = _KIND.get(nd["feature_type"])
        if kind is None:
            raise GraphFormatError(f"{path}: node {nd.get('node_id')!r} has an unknown "
                                   f"feature_type {nd['feature_type']!r}.")
        layer = {"embedding": -1, "logit": n_layers}.get(kind, int(nd["layer"]) if
                                                         kind != "embedding" else -1)
        feature = nd.get("iw_token_id") if kind == "embedding" else nd["feature"]
        if kind == "embedding" and feature is None:
            feature = int(str(nd["node_id"]).split("_")[1])
        if kind == "feature" and "iw_value" not in nd:  # circuit-tracer's Cantor-paired id
            feature = int(str(nd["node_id"]).split("_")[1])
        value = nd.get("iw_value", nd.get("activation"))
        rows.append({"node_id": nd["node_id"], "kind": kind, "layer": layer,
                     "pos": int(nd["ctx_idx"]), "feature": int(feature),
                     "value": np.nan if value is None else float(value),
                     "influence": nd.get("iw_influence", nd.get("influence")),
                     "token": "", "prob": float(nd.get("token_prob", 0.0))})
    for b in iw.get("bias_nodes", []):
        rows.append({"node_id": b["node_id"], "kind": "bias", "layer": b["layer"], "pos": -1,
                     "feature": -1, "value": np.nan, "influence": b["influence"], "token": "",
                     "prob": 0.0})
    nodes = pd.DataFrame(rows)
    if iw.get("order"):  # the adjacency order of the graph that was written
        nodes = nodes.set_index("node_id").loc[iw["order"]].reset_index()
    toks = list(meta.get("prompt_tokens") or [])
    for i, r in nodes.iterrows():
        if r.kind in ("feature", "error", "embedding") and 0 <= r.pos < len(toks):
            nodes.at[i, "token"] = toks[r.pos]
    where = {nid: i for i, nid in enumerate(nodes.node_id)}
    A = np.zeros((len(nodes), len(nodes)), dtype=np.float32)
    for link in [*data["links"], *iw.get("bias_links", [])]:
        if link["source"] not in where or link["target"] not in where:
            raise GraphFormatError(f"{path}: link {link['source']} -> {link['target']} names a "
                                   "node that is not in the nodes list.")
        A[where[link["target"]], where[link["source"]]] = link["weight"]
    logits = nodes[nodes.kind == "logit"]
    g = AttributionGraph(
        nodes=nodes, adjacency=A, tokens=list(iw.get("tokens") or []), str_tokens=toks,
        prompt=meta.get("prompt", ""), logit_ids=list(iw.get("logit_ids")
                                                      or logits.feature.tolist()),
        logit_probs=list(iw.get("logit_probs") or logits.prob.tolist()), n_layers=n_layers,
        model_name=iw.get("model_name"), transcoder_kind=iw.get("transcoder_kind"),
        supernodes={s[0]: list(s[1:]) for s in (data.get("qParams") or {}).get("supernodes", [])
                    if s},
        node_threshold=meta.get("node_threshold"), edge_threshold=iw.get("edge_threshold"),
        kept_node_influence=iw.get("kept_node_influence"),
        kept_edge_influence=iw.get("kept_edge_influence"))
    if nodes.influence.isna().any():
        g.compute_influence()
    return g
