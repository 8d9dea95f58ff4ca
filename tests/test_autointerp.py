"""Offline auto-interp, scores and the store: checked against hand computations and scikit-learn,
plus an end-to-end run on the demo model (scan -> records -> explain -> score -> store)."""

from __future__ import annotations

import json
import math
import multiprocessing
import random
import threading

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from interp_widgets import autointerp as ai
from interp_widgets.autointerp.records import normalize
from interp_widgets.autointerp.score import Scores

VOCAB = [" the", " cat", " sat", " on", " mat", " a", " red", " apple", " pie", ".", " dog"]


def planted(n_top: int = 10, n_random: int = 10, seed: int = 0) -> list[ai.ActivationRecord]:
    """Records of a unit that fires on " apple" (4.0) and more after " red" (8.0)."""
    rng = random.Random(seed)

    def one(source: str, force: bool) -> ai.ActivationRecord:
        toks = [rng.choice(VOCAB) for _ in range(12)]
        if force:
            at = rng.randrange(2, 12)
            toks[at] = " apple"
            if rng.random() < 0.5:
                toks[at - 1] = " red"
        acts = [(8.0 if i and toks[i - 1] == " red" else 4.0) if t == " apple"
                else rng.random() * 0.05 for i, t in enumerate(toks)]
        return ai.ActivationRecord(toks, acts, source=source)

    return [one("top", True) for _ in range(n_top)] + [one("random", False)
                                                       for _ in range(n_random)]


def test_record_checks_and_normalisation():
    with pytest.raises(ValueError, match="one activation per token"):
        ai.ActivationRecord(["a", "b"], [1.0])
    with pytest.raises(TypeError, match="not one string"):
        ai.ActivationRecord("ab", [1.0, 2.0])
    assert normalize([-1.0, 0.0, 0.99, 1.0, 2.5, 5.0], 5.0) == [0, 0, 1, 2, 5, 10]
    assert normalize([1.0, 2.0], 0.0) == [0, 0]
    recs = [ai.ActivationRecord(["a", "b"], [1.0, 4.0]), ai.ActivationRecord(["c"], [2.0])]
    assert ai.normalized(recs) == [[2, 10], [5]]


def test_split_records_alternates_top_and_holds_out_random():
    recs = planted(6, 4)
    shown, held = ai.split_records(recs)
    assert shown == recs[0:6:2]
    assert held == [recs[1], recs[3], recs[5]] + recs[6:]


def test_pooled_correlation_is_not_the_mean_of_per_record():
    true = [[0.0, 1.0, 2.0], [10.0, 11.0, 13.0]]
    pred = [[0.0, 2.0, 1.0], [5.0, 6.0, 7.0]]
    want = np.corrcoef(np.concatenate(true), np.concatenate(pred))[0, 1]
    assert ai.pooled_correlation(true, pred) == pytest.approx(want)
    mean_per_record = np.mean([np.corrcoef(t, p)[0, 1] for t, p in zip(true, pred)])
    assert abs(want - mean_per_record) > 0.1
    assert math.isnan(ai.pooled_correlation([[1.0, 1.0]], [[0.0, 2.0]]))


def test_offline_explainer_finds_tokens_and_ngrams_deterministically():
    recs = planted()
    text = ai.explain(recs)
    assert text == ai.explain(recs)  # deterministic
    assert text.kind == "statistical" and text.explainer == "offline-statistical"
    assert text.startswith(ai.STATISTICAL_LABEL)
    assert '" apple"' in text.split("n-grams:")[0]
    assert '" red"+" apple"' in text
    pred = ai.simulate(text, recs)
    for r, p in zip(recs, pred):
        for i, (t, v) in enumerate(zip(r.tokens, p)):
            if t == " apple":
                assert v > (5 if i and r.tokens[i - 1] == " red" else 2)
            elif not (i and r.tokens[i - 1] == " red"):
                assert v == 0.0


def test_units_with_a_resting_level_are_read_above_it():
    rng = random.Random(1)
    recs = []
    for i in range(12):
        toks = [rng.choice(VOCAB) for _ in range(10)]
        toks[3 + i % 5] = " pie"
        recs.append(ai.ActivationRecord(toks, [5.0 + (1.0 if t == " pie" else rng.random() * 0.1)
                                               for t in toks], source="top"))
    assert min(min(v) for v in ai.normalized(recs)) >= 8  # OpenAI's scale: all near 10
    text = ai.explain(recs)
    assert text.split("tokens: ")[1].startswith('" pie"'), text
    assert ai.score(text, recs).correlation > 0.9


def test_offline_baseline_changes_enrichment():
    recs = planted()
    # a baseline full of " apple": the token is no longer enriched
    assert '" apple"' not in ai.explain(recs, baseline=[[" apple"] * 50]).split("n-grams:")[0]


def test_explain_unit_measures_enrichment_against_the_random_records():
    recs = planted(6, 8)
    shown, _ = ai.split_records(recs)
    random_tokens = [r.tokens for r in recs if r.source == "random"]
    entry = ai.explain_unit(recs, model_id="m", source="h", unit=0, explainer="offline")
    assert entry.explanation == str(ai.explain(shown, explainer="offline",
                                               baseline=random_tokens))
    only_top = ai.explain_unit([r for r in recs if r.source == "top"], model_id="m",
                               source="h", unit=0, explainer="offline")
    assert only_top.explanation == str(ai.explain(shown, explainer="offline"))


def test_offline_simulator_reads_other_explanations_crudely():
    recs = [ai.ActivationRecord([" the", " Apple", " pie"], [0.0, 1.0, 0.0])]
    assert ai.simulate("mentions of apple fruit", recs) == [[0.0, 5.0, 0.0]]


def test_offline_score_matches_sklearn():
    recs = planted(seed=3)
    held = planted(seed=4)
    text = ai.explain(recs)
    s = ai.score(text, held)
    pred = ai.simulate(text, held)
    assert s.correlation == pytest.approx(
        np.corrcoef(np.concatenate([r.activations for r in held]), np.concatenate(pred))[0, 1])
    low = max(0.0, float(np.median([a for r in held if r.source == "random"
                                    for a in r.activations])))
    top = max(r.max_activation for r in held)
    levels = [[min(10, int(10 * max(a - low, 0) / (top - low))) for a in r.activations]
              for r in held]
    keep = [i for i, (r, v) in enumerate(zip(held, levels)) if r.source == "top" or max(v) < 1]
    labels = [int(held[i].source == "top") for i in keep]
    probs = [max(pred[i]) / 10 for i in keep]
    assert 0 < sum(labels) < len(labels)
    assert s.detection_auc == pytest.approx(roc_auc_score(labels, probs))
    assert s.detection_balanced_accuracy == pytest.approx(
        balanced_accuracy_score(labels, [int(p >= 0.1) for p in probs]))
    assert s.top_and_random == pytest.approx(s.correlation)
    assert s.fuzzing_auc > 0.9 and s.simulator == "offline-statistical"
    # an unrelated explanation scores worse
    bad = ai.score(f'{ai.STATISTICAL_LABEL} tokens: " mat" (9.0)', held)
    assert bad.correlation < s.correlation and bad.detection_auc < s.detection_auc


def test_scores_round_trip_json():
    s = Scores(correlation=0.5, notes=["x"])
    d = json.loads(json.dumps(s.to_dict()))
    assert d["detection_auc"] is None
    back = Scores.from_dict(d)
    assert back.correlation == 0.5 and math.isnan(back.detection_auc) and back.notes == ["x"]


def _entry(unit: int, explainer: str = "offline-statistical", corr: float = 0.5,
           text: str = "apples") -> ai.Entry:
    return ai.Entry("demo", "blocks.0.mlp.hook_post", unit, explainer,
                    "statistical" if explainer.startswith("offline") else "llm", text,
                    Scores(correlation=corr), {"n_explain": 5})


def test_store_put_get_search_delete(tmp_path):
    store = ai.AutoInterpStore(tmp_path / "s.sqlite")
    store.put([_entry(1), _entry(2, text="Pears and plums"), _entry(1, "gpt-x", 0.9, "fruit")])
    assert len(store) == 3
    assert store.get("demo", "blocks.0.mlp.hook_post", 1).explainer == "gpt-x"  # best score
    store.put(_entry(1, corr=0.95))  # replaces the offline row of unit 1
    assert len(store) == 3
    assert store.get("demo", "blocks.0.mlp.hook_post", 1).explainer == "offline-statistical"
    assert [e.unit for e in store.entries(search="PEAR")] == [2]
    assert store.get("demo", "other", 1) is None
    df = store.frame()
    assert list(df["unit"]) == [1, 1, 2] and "detection_auc" in df
    assert store.delete(unit=1) == 2 and len(store) == 1
    with pytest.raises(ValueError, match="kind"):
        store.put(ai.Entry("m", "s", 0, "e", "guess", "t"))


def test_store_rolls_back_a_failed_write(tmp_path):
    store = ai.AutoInterpStore(tmp_path / "s.sqlite")
    with pytest.raises(ValueError):
        store.put([_entry(1), ai.Entry("m", "s", 0, "e", "bad-kind", "t")])
    assert len(store) == 0


def _write_many(path: str, worker: int, n: int) -> None:
    store = ai.AutoInterpStore(path)
    for i in range(n):
        store.put(_entry(worker * 1000 + i))


def test_store_concurrent_writers_threads_and_processes(tmp_path):
    path = str(tmp_path / "s.sqlite")
    ai.AutoInterpStore(path)
    ctx = multiprocessing.get_context("fork")  # forked before any writer thread starts
    procs = [ctx.Process(target=_write_many, args=(path, 10 + w, 15)) for w in range(2)]
    for p in procs:
        p.start()
    threads = [threading.Thread(target=_write_many, args=(path, w, 15)) for w in range(4)]
    for t in threads:
        t.start()
    for x in threads + procs:
        x.join(60)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert all(p.exitcode == 0 for p in procs)
    assert len(ai.AutoInterpStore(path)) == 6 * 15


def test_neuronpedia_export_import(tmp_path):
    store = ai.AutoInterpStore(tmp_path / "a.sqlite")
    store.put([_entry(3, corr=0.25), _entry(4, "gpt-x", 0.75, "fruit")])
    for name in ("out.json", "out.jsonl"):
        path = store.export_json(tmp_path / name)
        other = ai.AutoInterpStore(tmp_path / f"{name}.sqlite")
        assert other.import_json(path) == 2
        assert len(other) == 2
        assert all(_same(a, b) for a, b in zip(other.entries(), store.entries()))
    items = json.loads((tmp_path / "out.json").read_text())
    first = items[0]
    assert {k: first[k] for k in ("modelId", "layer", "index", "description",
                                  "explanationModelName", "typeName")} == {
        "modelId": "demo", "layer": "blocks.0.mlp.hook_post", "index": "3",
        "description": "apples", "explanationModelName": "offline-statistical",
        "typeName": "iw_token-enrichment"}
    assert first["scores"] == [{"value": 0.25, "explanationScoreTypeName": "iw_correlation",
                                "explanationScoreModelName": ""}]
    # Neuronpedia's own records (no interp_widgets block) import too
    plain = tmp_path / "np.json"
    plain.write_text(json.dumps([{"modelId": "gpt2-small", "layer": "6-res-jb", "index": "17",
                                  "description": "dates", "explanationModelName": "gpt-4o-mini",
                                  "typeName": "oai_token-act-pair", "scores": []}]))
    other = ai.AutoInterpStore(tmp_path / "np.sqlite")
    assert other.import_json(plain) == 1
    e = other.get("gpt2-small", "6-res-jb", 17)
    assert e.kind == "llm" and e.explanation == "dates" and math.isnan(e.score)
    feature = tmp_path / "feature.jsonl"
    feature.write_text(json.dumps({"modelId": "gpt2-small", "layer": "6-res-jb", "index": "18",
                                   "explanations": [{"description": "years",
                                                     "explanationModelName": "claude",
                                                     "typeName": "oai_token-act-pair"}]}))
    assert other.import_json(feature) == 1
    assert other.get("gpt2-small", "6-res-jb", 18).explainer == "claude"
    bad = tmp_path / "bad.json"
    bad.write_text('[{"description": "x"}]')
    with pytest.raises(ValueError, match="missing"):
        other.import_json(bad)


def _same(a: ai.Entry, b: ai.Entry) -> bool:
    ra, rb = a.row(), b.row()
    return all((isinstance(v, float) and math.isnan(v) and math.isnan(rb[k])) or v == rb[k]
               for k, v in ra.items())


def test_store_refuses_the_api_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abcdefghijkl")
    store = ai.AutoInterpStore(tmp_path / "s.sqlite")
    with pytest.raises(ValueError, match="never written"):
        store.put(_entry(1, text="key sk-abcdefghijkl"))


def test_offline_batch_on_the_demo_model(model, tmp_path):
    from interp_widgets.analysis.corpus import scan_neurons
    from interp_widgets.demo import corpus

    scan = scan_neurons(model, corpus(60, seed=5), layer=0, k=10, batch_size=30,
                        correlations=False, progress=False)
    units = {n: ai.records_from_scan(scan, n, n_top=10, n_random=10) for n in range(6)}
    top = units[0][:10]
    assert [r.source for r in units[0]] == ["top"] * 10 + ["random"] * len(units[0][10:])
    examples = scan.top_examples(0)[:10]  # best first; a window may hold a higher neighbour
    assert [(r.meta["doc"], r.meta["pos"]) for r in top] == [(e.doc, e.pos) for e in examples]
    assert [r.activations for r in top] == [e.acts for e in examples]
    store = ai.AutoInterpStore(tmp_path / "demo.sqlite")
    out = ai.explain_units(units, model_id=model.name, source=scan.meta["hook"], store=store,
                           progress=False)
    assert len(out.done) == 6 and out.calls == 0 and len(store) == 6
    scores = [e.score for e in store.entries()]
    for e in store.entries():
        assert e.explanation.startswith(ai.STATISTICAL_LABEL) and e.kind == "statistical"
        assert -1.0 <= e.score <= 1.0 or (math.isnan(e.score) and e.scores.notes)
    assert np.isfinite(scores).sum() >= 3 and np.nanmean(scores) > 0.2
