"""Neuronpedia's export: write a scan as the JSONL files Neuronpedia imports
(`write_neuronpedia`) and read such an export back (`read_neuronpedia`).

The layout and fields are those of Neuronpedia's `utils/neuronpedia-utils` export scripts and
its webapp's importer (`apps/webapp/app/api/admin/import/route.ts`):

    ROOT/{modelId}/{sourceId}/release.jsonl, model.jsonl, sourceset.jsonl, source.jsonl
    ROOT/{modelId}/{sourceId}/features/batch-{i}.jsonl.gz       one row per feature ("Neuron")
    ROOT/{modelId}/{sourceId}/activations/batch-{i}.jsonl.gz    activation records
    ROOT/{modelId}/{sourceId}/explanations/batch-{i}.jsonl.gz   explanations

`sourceId` is "{layer}-{sourceSetName}", each batch covers 1,024 consecutive features, and `index`
and `layer` are strings. A feature row carries maxActApprox, frac_nonzero (the density), the
activation histogram (freq_hist_data_bar_heights / _values), the logit effect (pos_str /
pos_values, neg_str / neg_values) and, with a basis, its decoder vector. Activation records follow
SAEDashboard's convention: top examples have binMin = -1 and binContains = -1 (binMax their
value); quantile samples carry their interval (binMin, binMax] and the fraction of the unit's
nonzero positions it holds (binContains). Each record's `tokens` and `values` are one context,
`qualifyingTokenIndex` / `maxValueTokenIndex` the example's position in it; `dataIndex` is
"{doc}:{pos}" in the scanned corpus.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._files import write_bytes
from .units_adapter import check_units, logit_effects, scan_hook, unit_directions, unit_record

if TYPE_CHECKING:
    from ..model import Model

BATCH = 1024  # features per batch file, as Neuronpedia's exporter writes them
CREATOR = "interp-widgets"


def _gz_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as gzipped JSONL, atomically."""
    body = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows)
    write_bytes(path, gzip.compress(body.encode(), compresslevel=5, mtime=0))


def _jsonl(path: Path, row: dict[str, Any]) -> None:
    write_bytes(path, (json.dumps(row, ensure_ascii=False) + "\n").encode())


def _finite(x: float) -> float:
    return x if x == x and abs(x) != float("inf") else 0.0


def _activation(ex: Any, model_id: str, source: str, unit: int, n: int, *, bin_min: float,
                bin_max: float, bin_contains: float, created: str) -> dict[str, Any]:
    values = [_finite(float(v)) for v in ex.acts]
    top = max(range(len(values)), key=values.__getitem__) if values else 0
    return {"id": f"{source}-{unit}-{n}", "tokens": list(ex.tokens), "modelId": model_id,
            "layer": source, "index": str(unit), "maxValue": max(values, default=0.0),
            "maxValueTokenIndex": top, "minValue": min(values, default=0.0), "values": values,
            "creatorId": CREATOR, "dataSource": "interp_widgets scan",
            "dataIndex": f"{ex.doc}:{ex.pos}", "dfaValues": [], "dfaTargetIndex": None,
            "dfaMaxValue": None, "createdAt": created, "lossValues": [],
            "logitContributions": None, "binMin": bin_min, "binMax": bin_max,
            "binContains": bin_contains, "qualifyingTokenIndex": int(ex.center)}


def write_neuronpedia(scan: Any, path: str | os.PathLike, *, model_id: str,
                      source_set: str, layer: int | None = None, units: Any = None,
                      model: Model | None = None, basis: Any = None,
                      explanations: Mapping[int, Any] | None = None,
                      explanation_model: str | None = None, description: str = "",
                      k_logits: int = 10, with_vectors: bool = True) -> Path:
    """Write `scan` (a UnitScan, NeuronScan or FeatureScan) as a Neuronpedia export under
    `path`; returns the source folder ROOT/{model_id}/{layer}-{source_set}.

    model_id: Neuronpedia's model id (e.g. "gpt2-small"); source_set: the source set name (e.g.
        "res-jb"); layer: default the scan's layer. units: which units (default all).
    model, basis: give them for the logit effect (pos_str/neg_str) and, with `with_vectors`,
        each feature's decoder vector; without them those fields stay empty.
    explanations: {unit: text} or {unit: {"description", "typeName", "explanationModelName"}}.
    """
    if not re.fullmatch(r"[A-Za-z0-9._-]+", model_id) or not re.fullmatch(r"[A-Za-z0-9._-]+",
                                                                          source_set):
        raise ValueError("model_id and source_set must be letters, digits, '.', '_' or '-' "
                         f"(they become folder names and URLs); got {model_id!r}, "
                         f"{source_set!r}.")
    ids = check_units(scan, units)
    layer = layer if layer is not None else getattr(scan, "layer", None)
    if layer is None or int(layer) < 0:
        raise ValueError("Say which layer the source is at: layer=...")
    source = f"{int(layer)}-{source_set}"
    folder = Path(path).expanduser() / model_id / source
    created = datetime.now(timezone.utc).isoformat()
    hook = scan_hook(scan)
    directions = unit_directions(model, scan, basis)
    effects = logit_effects(model, directions, ids, k_logits) \
        if model is not None and directions is not None else {}
    _jsonl(folder / "release.jsonl", {
        "name": source_set, "description": description or f"{source_set} (interp_widgets)",
        "descriptionShort": description or source_set, "creatorName": CREATOR,
        "creatorNameShort": CREATOR, "creatorId": CREATOR, "visibility": "PUBLIC", "urls": [],
        "createdAt": created})
    _jsonl(folder / "model.jsonl", {
        "id": model_id, "instruct": model_id.endswith("-it"), "creatorId": CREATOR,
        "displayNameShort": model_id, "displayName": model_id, "visibility": "PUBLIC",
        "layers": int(model.cfg.n_layers) if model is not None else 0,
        "dimension": int(model.cfg.d_model) if model is not None else None,
        "createdAt": created, "updatedAt": created})
    _jsonl(folder / "sourceset.jsonl", {
        "modelId": model_id, "name": source_set, "creatorId": CREATOR, "creatorName": CREATOR,
        "releaseName": source_set, "description": description or hook, "visibility": "PUBLIC",
        "hasDashboards": True, "createdAt": created})
    _jsonl(folder / "source.jsonl", {
        "id": source, "modelId": model_id, "setName": source_set, "creatorId": CREATOR,
        "hasDashboards": True, "visibility": "PUBLIC", "dataset": "interp_widgets corpus",
        "num_prompts": getattr(scan, "n_docs", None), "createdAt": created})
    for b, start in enumerate(range(0, len(ids), BATCH)):
        feats, acts, expl = [], [], []
        for u in ids[start:start + BATCH]:
            rec = unit_record(scan, u)
            eff = effects.get(u, {"top": [], "bottom": []})
            counts, edges = rec.histogram if rec.histogram is not None else ([], [])
            vec = directions[u].tolist() if with_vectors and directions is not None else []
            feats.append({
                "modelId": model_id, "layer": source, "index": str(u), "creatorId": CREATOR,
                "createdAt": created, "maxActApprox": rec.max_value, "hasVector": bool(vec),
                "vector": vec, "vectorLabel": None, "vectorDefaultSteerStrength":
                    rec.max_value or 10.0, "hookName": hook,
                "topkCosSimIndices": [], "topkCosSimValues": [],
                "neg_str": [t for t, _ in eff["bottom"]],
                "neg_values": [v for _, v in eff["bottom"]],
                "pos_str": [t for t, _ in eff["top"]], "pos_values": [v for _, v in eff["top"]],
                "frac_nonzero": rec.density,
                "freq_hist_data_bar_heights": [float(c) for c in counts],
                "freq_hist_data_bar_values": [float(e) for e in edges],
                "logits_hist_data_bar_heights": [], "logits_hist_data_bar_values": [],
                "decoder_weights_dist": [], "sourceSetName": source_set})
            n = 0
            for ex in rec.top:
                acts.append(_activation(ex, model_id, source, u, n, bin_min=-1,
                                        bin_max=float(ex.value), bin_contains=-1,
                                        created=created))
                n += 1
            for bucket in rec.buckets:
                for ex in bucket.examples:
                    acts.append(_activation(ex, model_id, source, u, n, bin_min=bucket.lo,
                                            bin_max=bucket.hi,
                                            bin_contains=bucket.q_hi - bucket.q_lo,
                                            created=created))
                    n += 1
            if explanations is not None and u in explanations:
                e = explanations[u]
                e = {"description": e} if isinstance(e, str) else dict(e)
                expl.append({"id": f"{source}-{u}-explanation", "modelId": model_id,
                             "layer": source, "index": str(u), "authorId": CREATOR,
                             "description": str(e["description"]),
                             "typeName": e.get("typeName", "interp_widgets"),
                             "explanationModelName": e.get("explanationModelName",
                                                           explanation_model),
                             "embedding": None, "notes": None, "createdAt": created})
        _gz_jsonl(folder / "features" / f"batch-{b}.jsonl.gz", feats)
        _gz_jsonl(folder / "activations" / f"batch-{b}.jsonl.gz", acts)
        if expl:
            _gz_jsonl(folder / "explanations" / f"batch-{b}.jsonl.gz", expl)
    return folder


# ---- reading -----------------------------------------------------------------------------------


@dataclass
class NeuronpediaExample:
    """One activation record: its context `tokens`, `values` on them, the example's position
    (`center`) and value, and the bin it was drawn from (`bin_min` = -1 for top examples)."""

    tokens: list[str]
    values: list[float]
    center: int
    value: float
    bin_min: float | None
    bin_max: float | None
    bin_contains: float | None
    data_index: str | None


@dataclass
class NeuronpediaFeature:
    """A feature of a Neuronpedia export, with its activation records and explanations."""

    index: int
    row: dict[str, Any]
    activations: list[NeuronpediaExample] = field(default_factory=list)
    explanations: list[str] = field(default_factory=list)

    @property
    def density(self) -> float:
        return float(self.row.get("frac_nonzero") or 0.0)

    @property
    def max_act(self) -> float:
        return float(self.row.get("maxActApprox") or 0.0)

    def top_examples(self) -> list[NeuronpediaExample]:
        """The records SAEDashboard marks as top activations (binMin = -1), strongest first."""
        top = [a for a in self.activations if a.bin_min is not None and a.bin_min == -1]
        return sorted(top, key=lambda a: -a.value)

    def quantile_examples(self) -> list[NeuronpediaExample]:
        return [a for a in self.activations if a.bin_min is None or a.bin_min != -1]

    @property
    def logit_effect(self) -> dict[str, list[tuple[str, float]]]:
        r = self.row
        return {"top": list(zip(r.get("pos_str", []), r.get("pos_values", []))),
                "bottom": list(zip(r.get("neg_str", []), r.get("neg_values", [])))}


@dataclass
class NeuronpediaExport:
    """A Neuronpedia export read back: `features` by index, and the metadata rows."""

    path: Path
    model_id: str
    source: str
    features: dict[int, NeuronpediaFeature]
    meta: dict[str, dict[str, Any]]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> NeuronpediaFeature:
        return self.features[int(index)]

    def __repr__(self) -> str:
        return (f"NeuronpediaExport({self.model_id}/{self.source}: {len(self)} features, "
                f"{sum(len(f.activations) for f in self.features.values()):,} activation "
                "records)")


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}, line {i + 1}, is not JSON: {e}.") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"{path} could not be read (corrupt or truncated?): {e}") from None


def _batches(folder: Path) -> list[Path]:
    files = list(folder.glob("batch-*.jsonl.gz")) + list(folder.glob("batch-*.jsonl"))
    return sorted(files, key=lambda p: int(re.findall(r"\d+", p.name)[0]))


def read_neuronpedia(path: str | os.PathLike) -> NeuronpediaExport:
    """Read a Neuronpedia export: the source folder ROOT/{modelId}/{sourceId} (or a ROOT that
    holds exactly one such folder)."""
    folder = Path(path).expanduser()
    if not (folder / "features").is_dir():
        found = [p.parent for p in folder.glob("*/*/features")]
        if len(found) != 1:
            raise FileNotFoundError(f"{folder} is not a Neuronpedia source folder (one with "
                                    f"features/ inside); found {len(found)} under it.")
        folder = found[0]
    meta = {}
    for name in ("release", "model", "sourceset", "source"):
        p = folder / f"{name}.jsonl"
        if p.exists():
            meta[name] = next(_read_jsonl(p), {})
    features: dict[int, NeuronpediaFeature] = {}
    for f in _batches(folder / "features"):
        for row in _read_jsonl(f):
            features[int(row["index"])] = NeuronpediaFeature(int(row["index"]), row)
    for f in _batches(folder / "activations"):
        for row in _read_jsonl(f):
            feat = features.get(int(row["index"]))
            if feat is None:
                raise ValueError(f"{f} has an activation of feature {row['index']}, which no "
                                 "features/ file lists.")
            center = row.get("qualifyingTokenIndex")
            center = row.get("maxValueTokenIndex", 0) if center is None else center
            values = row.get("values", [])
            feat.activations.append(NeuronpediaExample(
                tokens=row.get("tokens", []), values=values, center=int(center),
                value=float(values[center]) if 0 <= center < len(values) else
                float(row.get("maxValue", 0.0)),
                bin_min=row.get("binMin"), bin_max=row.get("binMax"),
                bin_contains=row.get("binContains"), data_index=row.get("dataIndex")))
    if (folder / "explanations").is_dir():
        for f in _batches(folder / "explanations"):
            for row in _read_jsonl(f):
                feat = features.get(int(row["index"]))
                if feat is not None:
                    feat.explanations.append(row["description"])
    return NeuronpediaExport(folder, folder.parent.name, folder.name, features, meta)
