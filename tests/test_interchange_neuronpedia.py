"""Neuronpedia's export: `iw.write_neuronpedia` writes a scan as Neuronpedia's JSONL batches and
`iw.read_neuronpedia` reads them back. Neuronpedia has no local loader to run, so its side is
the field list of its `neuronpedia_utils/db_models` (Feature, Activation, Explanation) and the
folder layout its webapp importer walks; the numbers are checked against the scan and against
`iw.feature_logit_effect`."""

import gzip
import json

import pytest
import torch

import interp_widgets as iw
from interp_widgets.interchange import neuronpedia

#: the dataclass fields of Neuronpedia's db_models (utils/neuronpedia-utils) that the importer
#: writes into its tables: a row without one of them is not what Neuronpedia exports
FEATURE_FIELDS = {
    "modelId", "layer", "index", "creatorId", "createdAt", "maxActApprox", "hasVector", "vector",
    "vectorLabel", "vectorDefaultSteerStrength", "hookName", "topkCosSimIndices",
    "topkCosSimValues", "neg_str", "neg_values", "pos_str", "pos_values", "frac_nonzero",
    "freq_hist_data_bar_heights", "freq_hist_data_bar_values", "logits_hist_data_bar_heights",
    "logits_hist_data_bar_values", "decoder_weights_dist", "sourceSetName"}
ACTIVATION_FIELDS = {
    "id", "tokens", "index", "layer", "modelId", "maxValue", "maxValueTokenIndex", "minValue",
    "values", "creatorId", "dataSource", "dataIndex", "dfaValues", "dfaTargetIndex",
    "dfaMaxValue", "createdAt", "lossValues", "logitContributions", "binMin", "binMax",
    "binContains", "qualifyingTokenIndex"}
EXPLANATION_FIELDS = {"id", "modelId", "layer", "index", "description", "authorId",
                      "embedding", "typeName", "explanationModelName", "createdAt"}


@pytest.fixture(scope="module")
def sae():
    return iw.demo.load_sae()


@pytest.fixture(scope="module")
def scan(model, sae):
    return iw.scan_features(model, sae, iw.demo.corpus(80, seed=7), k=8, progress=False)


@pytest.fixture(scope="module")
def export(model, sae, scan, tmp_path_factory):
    units = [int(u) for u in scan.density.argsort(descending=True)[:40]] + [1023]
    root = tmp_path_factory.mktemp("np")
    folder = iw.write_neuronpedia(scan, root, model_id="iw-demo", source_set="demo-sae",
                                  model=model, basis=sae, units=units,
                                  explanations={units[0]: "fires on articles",
                                                units[1]: {"description": "nouns",
                                                           "explanationModelName": "m"}})
    return units, folder


def _rows(path):
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def test_layout_and_fields_are_neuronpedias(export):
    units, folder = export
    assert folder.name == "1-demo-sae" and folder.parent.name == "iw-demo"
    for name in ("release", "model", "sourceset", "source"):
        assert (folder / f"{name}.jsonl").exists()
    feats = _rows(folder / "features" / "batch-0.jsonl.gz")
    acts = _rows(folder / "activations" / "batch-0.jsonl.gz")
    expl = _rows(folder / "explanations" / "batch-0.jsonl.gz")
    assert [r["index"] for r in feats] == [str(u) for u in units]
    assert all(FEATURE_FIELDS <= r.keys() and r["layer"] == "1-demo-sae" for r in feats)
    assert all(ACTIVATION_FIELDS <= r.keys() for r in acts)
    assert all(EXPLANATION_FIELDS <= r.keys() for r in expl) and len(expl) == 2
    assert len({r["id"] for r in acts}) == len(acts)


def test_round_trip_keeps_the_scans_numbers(export, scan):
    units, folder = export
    back = iw.read_neuronpedia(folder.parent.parent)  # the root holds one source
    assert sorted(back.features) == sorted(units)
    for u in units[:10] + [1023]:
        f = back[u]
        assert f.density == pytest.approx(float(scan.density[u]))
        top = f.top_examples()
        assert [a.value for a in top] == pytest.approx(scan.top_values(u).tolist())
        for got, ex in zip(top, scan.top_examples(u)):
            assert got.tokens == ex.tokens and got.values == pytest.approx(ex.acts)
            assert got.center == ex.center and got.data_index == f"{ex.doc}:{ex.pos}"
        buckets = scan.bucket_examples(u)
        assert len(f.quantile_examples()) == sum(len(b.examples) for b in buckets)
        for got, bk in zip(f.quantile_examples(), [b for b in buckets for _ in b.examples]):
            assert (got.bin_min, got.bin_max) == pytest.approx((bk.lo, bk.hi))
        counts, edges = scan.histogram(u)
        assert f.row["freq_hist_data_bar_heights"] == counts.tolist()
        assert f.row["freq_hist_data_bar_values"] == pytest.approx(edges.tolist())
    assert back[units[0]].explanations == ["fires on articles"]
    assert back[units[1]].explanations == ["nouns"] and back[units[2]].explanations == []
    assert back[1023].max_act == (float(scan.top_values(1023)[0])
                                  if len(scan.top_values(1023)) else 0.0)


def test_logit_effect_and_vector_match_the_analysis(export, model, sae):
    units, folder = export
    back = iw.read_neuronpedia(folder)
    u = units[3]
    ref = iw.feature_logit_effect(model, sae, u, k=10)
    eff = back[u].logit_effect
    assert [t for t, _ in eff["top"]] == ref.top["token"].tolist()
    assert [v for _, v in eff["top"]] == pytest.approx(ref.top["effect"].tolist(), rel=1e-5)
    assert [t for t, _ in eff["bottom"]] == ref.bottom["token"].tolist()
    torch.testing.assert_close(torch.tensor(back[u].row["vector"]),
                               sae.feature_directions()[u].detach().float())


def test_batches_of_1024_features_and_bad_input(scan, tmp_path, monkeypatch):
    monkeypatch.setattr(neuronpedia, "BATCH", 4)
    folder = iw.write_neuronpedia(scan, tmp_path, model_id="m", source_set="s",
                                  units=range(10))
    assert sorted(p.name for p in (folder / "features").iterdir()) == [
        "batch-0.jsonl.gz", "batch-1.jsonl.gz", "batch-2.jsonl.gz"]
    back = iw.read_neuronpedia(folder)
    assert sorted(back.features) == list(range(10))
    assert back[2].row["pos_str"] == [] and back[2].row["vector"] == []  # no model or basis
    with pytest.raises(ValueError, match="letters, digits"):
        iw.write_neuronpedia(scan, tmp_path, model_id="a/b", source_set="s")
    with pytest.raises(IndexError, match="out of range"):
        iw.write_neuronpedia(scan, tmp_path, model_id="m", source_set="s", units=[5000])
    (folder / "features" / "batch-1.jsonl.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        iw.read_neuronpedia(folder)
