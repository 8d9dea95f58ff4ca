"""Delphi's scorers (autointerp/scorers.py), each against a small case worked out by hand from
Delphi's construction and metrics (delphi/scorers/, delphi/log/result_analysis.py), through
the loopback OpenAI test server where a judge answers."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from openai_server import FakeOpenAIServer  # the loopback test double, in tests/

from interp_widgets import autointerp as ai
from interp_widgets.autointerp import scorers as sc

EXPLANATION = 'the token "cat"'
A = ai.ActivationRecord


def _records():
    """Three activating records (two hold "cat"), three random ones that do not fire (one is
    "cat" alone)."""
    return [A(["the", "cat", "sat"], [0, 5, 0], "top"),
            A(["a", "cat"], [0, 3], "top"),
            A(["dog", "ran"], [2, 0], "top"),
            A(["cat"], [0], "random"),
            A(["sun", "set"], [0, 0], "random"),
            A(["big", "tree"], [0, 0], "random")]


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer() as s:
        yield s


def _llm(server):
    return ai.Client("fake", base_url=server.base_url, api_key="sk-test", max_concurrency=1)


def _examples(server, task_word: str) -> list[str]:
    out = []
    for r in server.requests:
        msgs = r["body"].get("messages") or []
        if msgs and task_word in msgs[0]["content"]:
            out += re.findall(r"^Example \d+: (.*)$", msgs[-1]["content"], flags=re.M)
    return out


def test_unknown_scorer_names_the_scorers():
    with pytest.raises(ValueError, match="Unknown scorer 'fuzz': the scorers are detection, "
                                         "fuzzing, intruder, embedding, surprisal"):
        sc.check_scorers(["detection", "fuzz"])
    with pytest.raises(ValueError, match="the scorers are"):
        ai.score(EXPLANATION, _records(), scorers=["simulation"])


def test_detection_by_hand(server):
    """The judge (the test server) says 0.9 when the text holds "cat", else 0.1. Activating:
    2 hold cat (TP), 1 not (FN); non-activating: 1 holds cat (FP), 2 not (TN). Delphi's metrics:
    accuracy (balanced) = (2/3 + 2/3) / 2, precision 2/3, recall 2/3, F1 2/3; AUC over the 9
    (activating, non-activating) pairs: 0.9 vs 0.1 wins 2*2 = 4, 0.9 vs 0.9 ties 2*1 -> 1,
    0.1 vs 0.1 ties 1*2 -> 1: 6/9."""
    res = sc.run_scorers(EXPLANATION, _records(), ["detection"], llm=_llm(server))["detection"]
    m = res.metrics
    assert m["accuracy"] == pytest.approx(2 / 3) and m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(6 / 9)
    assert res.n == 6 and set(res.intervals) == set(sc.CLASSIFIER_METRICS)
    shown = _examples(server, "contains what the description describes")
    assert sorted(shown[-6:]) == sorted(["thecatsat", "acat", "dogran", "cat", "sunset",
                                         "bigtree"])  # unmarked texts


def test_fuzzing_marks_as_delphi_does(server):
    """Activating records mark the tokens at >= 0.3 x their own peak: [0,5,0] -> "cat",
    [0,3] -> "cat", [2,0] -> "dog". Each activating record has 1 token above 0, so each
    non-activating record marks ceil(1) = 1 random token ("cat" alone can only mark "cat").
    Judge: 0.9 when "<<cat>>" is marked: TP 2, FN 1 ("<<dog>>ran"), FP 1 ("<<cat>>"), TN 2:
    the same metrics as detection above."""
    server.requests.clear()
    res = sc.run_scorers(EXPLANATION, _records(), ["fuzzing"], llm=_llm(server))["fuzzing"]
    shown = _examples(server, "marked")
    assert {"the<<cat>>sat", "a<<cat>>", "<<dog>>ran", "<<cat>>"} <= set(shown)
    rest = [t for t in shown if t.replace("<<", "").replace(">>", "") in ("sunset", "bigtree")]
    assert len(rest) == 2 and all(t.count("<<") == 1 for t in rest)
    assert res.metrics["f1"] == pytest.approx(2 / 3)
    assert res.metrics["accuracy"] == pytest.approx(2 / 3)
    assert res.metrics["auc"] == pytest.approx(6 / 9)


def test_fuzzing_never_marks_wrong_tokens_inside_firing_records():
    recs = _records()
    chosen = [(i, 1 if r.source == "top" else 0) for i, r in enumerate(recs)]
    marks = sc.fuzz_samples(recs, chosen)
    assert marks[:3] == [[False, True, False], [False, True], [True, False]]
    assert [sum(m) for m in marks[3:]] == [1, 1, 1]
    # a record with two tokens above the floor: ceil of the mean count (2 + 1) / 2 -> 2
    two = [A(["a", "b", "c"], [4, 0, 2], "top"), A(["d", "e"], [0, 1], "top"),
           A(["f", "g", "h"], [0, 0, 0], "random")]
    m = sc.fuzz_samples(two, [(0, 1), (1, 1), (2, 0)])
    assert m[0] == [True, False, True] and m[1] == [False, True] and sum(m[2]) == 2
    assert sc.highlight(["a", "b", "c", "d"], [True, True, False, True]) == "<<ab>>c<<d>>"


class IntruderServer(FakeOpenAIServer):
    """The test server, answering the intruder question with the first example holding "zz"
    (0 when none does)."""

    def _chat(self, body):
        msgs = body.get("messages") or [{}]
        if "intruder" not in str(msgs[0].get("content", "")):
            return super()._chat(body)
        examples = re.findall(r"^Example (\d+): (.*)$", msgs[-1]["content"], flags=re.M)
        pick = next((int(i) for i, t in examples if "zz" in t), 0)
        reply = super()._chat({**body, "messages": [{"role": "user", "content": ""}]})
        reply["choices"][0]["message"]["content"] = json.dumps({"intruder": pick})
        return reply


def test_intruder_by_hand():
    """Two quantiles of one activating record each, 2 examples per question (1 activating + the
    intruder), trials cycle the quantiles: trial 0 quantile 0 ("thecat") + intruder "zz x"
    -> the judge finds "zz": right; trial 1 quantile 1 ("zzcat") + intruder "y w" -> the judge
    picks the activating one: wrong; trial 2 quantile 0 + intruder "zz v": right.
    Accuracy 2/3. Each intruder marks floor(1 / 1) = 1 random token."""
    recs = [A(["the", "cat"], [0, 5], "top", meta={"quantile": 0}),
            A(["zz", "cat"], [0, 5], "top", meta={"quantile": 1}),
            A(["zz", "x"], [0, 0], "random"), A(["y", "w"], [0, 0], "random"),
            A(["zz", "v"], [0, 0], "random")]
    with IntruderServer() as s:
        res = sc.run_scorers(EXPLANATION, recs, ["intruder"], llm=_llm(s),
                             examples_per_call=2)["intruder"]
        asked = [r["body"]["messages"] for r in s.requests]
    assert res.metrics["accuracy"] == pytest.approx(2 / 3) and res.n == 3
    assert all(EXPLANATION not in json.dumps(m) for m in asked)  # the judge never sees it
    for trial in res.samples:
        intruder_text = trial["texts"][trial["intruder"]]
        assert intruder_text.count("<<") == 1 and len(trial["texts"]) == 2
    with pytest.raises(ValueError, match="at least 2 examples"):
        sc.intruder_trials(recs, [(0, 1), (2, 0)], 1)


class BagOfWords:
    """A test embedder: counts of "cat", "dog", "sun" in the text."""

    def encode(self, texts):
        return np.array([[t.lower().count(w) for w in ("cat", "dog", "sun")] for t in texts],
                        dtype=float)


def test_embedding_by_hand():
    """Query "...Query:cat" -> [1, 0, 0]. Activating "thecat" [1,0,0] (cosine 1), "adog"
    [0,1,0] (0); non-activating "suncat" [1,0,1] (1/sqrt 2), "sunset" [0,0,1] (0). AUC over the
    4 pairs: 1 > 0.71, 1 > 0, 0 < 0.71, 0 = 0 (one half): 2.5 / 4."""
    recs = [A(["the", "cat"], [0, 4], "top"), A(["a", "dog"], [0, 4], "top"),
            A(["sun", "cat"], [0, 0], "random"), A(["sun", "set"], [0, 0], "random")]
    res = sc.run_scorers("cat", recs, ["embedding"], embedder=BagOfWords())["embedding"]
    assert res.metrics["auc"] == pytest.approx(0.625)
    sims = {s["text"]: s["similarity"] for s in res.samples}
    assert sims["suncat"] == pytest.approx(1 / math.sqrt(2)) and sims["thecat"] == 1.0


def test_no_embedding_model_offline_is_said_and_the_others_go_on(monkeypatch):
    monkeypatch.delenv("IW_EMBEDDING_MODEL", raising=False)
    out = sc.run_scorers(EXPLANATION, _records(), ["embedding", "detection"])
    assert "No embedding model available offline" in out["embedding"].error
    assert not out["embedding"].metrics
    assert not math.isnan(out["detection"].metrics["auc"])
    s = ai.score(EXPLANATION, _records(), scorers=["embedding", "detection"])
    assert math.isnan(s.embedding_auc) and not math.isnan(s.detection_auc)
    assert any("No embedding model available offline" in n for n in s.notes)


def test_surprisal_losses_match_the_hf_model_and_the_summary_by_hand(model):
    """Each sample's loss after the prompt equals the Hugging Face model's own cross-entropy
    on the same ids (its first token not scored, as in Delphi); the AUC and class means are
    the hand-computed ones from the per-sample reductions."""
    from transformers import AutoModelForCausalLM

    from interp_widgets.demo import MODEL_DIR

    recs = [A([" the", " cat", " sat", " down"], [0, 5, 0, 0], "top"),
            A([" a", " cat", " ran"], [0, 3, 0], "top"),
            A([" the", " sun", " set"], [0, 0, 0], "random"),
            A([" big", " old", " tree"], [0, 0, 0], "random")]
    res = sc.run_scorers(EXPLANATION, recs, ["surprisal"], lm=model)["surprisal"]
    hf = AutoModelForCausalLM.from_pretrained(MODEL_DIR).eval()

    def loss(prefix: str, text: str) -> float:
        head = model.to_tokens(prefix)[0].tolist()
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        full = torch.tensor([head + ids])
        with torch.no_grad():
            logp = hf(full).logits[0].log_softmax(-1)
        at = range(len(head) + 1, len(full[0]))  # the text's 2nd token on
        return float(np.mean([-logp[i - 1, full[0, i]].item() for i in at]))

    red = []
    for r in recs:
        text = "".join(r.tokens)
        red.append(loss(sc.surprisal_prompt(sc.SURPRISAL_BASELINE), text)
                   - loss(sc.surprisal_prompt(EXPLANATION), text))
    got = [s["loss_reduction"] for s in res.samples]
    np.testing.assert_allclose(got, red, atol=1e-4)
    pos, neg = red[:2], red[2:]
    auc = np.mean([1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg])
    assert res.metrics["auc"] == pytest.approx(auc)
    assert res.metrics["reduction_activating"] == pytest.approx(np.mean(pos), abs=1e-4)
    assert res.metrics["reduction_non_activating"] == pytest.approx(np.mean(neg), abs=1e-4)
    with pytest.raises(ValueError, match="needs a language model"):
        sc.run_scorers(EXPLANATION, recs, ["surprisal"])


def test_auc_statistic_by_hand():
    """Reductions 0.5, 0.2 (activating) vs 0.1, 0.3: pairs won 0.5>0.1, 0.5>0.3, 0.2>0.1 of
    4: 0.75."""
    stat = sc.auc_statistic([1, 1, 0, 0], [0.5, 0.2, 0.1, 0.3])
    assert stat(np.ones((1, 4)))[0, 0] == pytest.approx(0.75)


def test_score_carries_intervals_and_delphi_metrics(server):
    s = ai.score(EXPLANATION, _records(), client=_llm(server),
                 scorers=["detection", "fuzzing"])
    assert s.detection_f1 == pytest.approx(2 / 3) and s.fuzzing_f1 == pytest.approx(2 / 3)
    e = s.estimate("detection_auc")
    assert e.value == pytest.approx(6 / 9) and e.low <= e.value <= e.high
    assert set(s.delphi) == {"detection", "fuzzing"}
    assert s.delphi["detection"]["metrics"]["precision"] == pytest.approx(2 / 3)
    row = s.row()
    assert {"detection_auc", "detection_auc_low", "detection_auc_high"} <= set(row)
    back = ai.Scores.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back.intervals == s.intervals and back.estimate("detection_auc") == e


def test_classifier_intervals_cover_the_truth_95_percent_of_the_time():
    """1,000 simulated scorers of 20 activating + 20 non-activating samples, probabilities
    N(1, 1) against N(0, 1): true AUC = Phi(1 / sqrt 2), true balanced accuracy at threshold
    0.5 = (P(N(1,1) >= 0.5) + P(N(0,1) < 0.5)) / 2. The 95% intervals cover both 93-97% of
    the time."""
    from scipy.stats import norm

    from interp_widgets.analysis.uncertainty import bootstrap

    rng = np.random.default_rng(2026)
    true_auc = norm.cdf(1 / math.sqrt(2))
    true_acc = ((1 - norm.cdf(-0.5)) + norm.cdf(0.5)) / 2
    labels = np.r_[np.ones(20, int), np.zeros(20, int)]
    hits = np.zeros(2)
    for run in range(1000):
        p = np.where(labels == 1, rng.normal(1, 1, 40), rng.normal(0, 1, 40))
        stat = sc._classification_statistic(labels, p, 0.5)
        est = bootstrap(stat, 40, n_boot=1000, seed=run, method="percentile", strata=labels)
        hits += [est[4].contains(true_auc), est[0].contains(true_acc)]
    assert np.all((0.93 <= hits / 1000) & (hits / 1000 <= 0.97)), hits


def test_the_table_and_the_probe_view_sync_intervals(tmp_path, server):
    """A stored entry keeps its intervals; AutoInterpTable syncs them beside each score, and
    ProbeView syncs each F1's interval and how the rows were split."""
    from interp_widgets.analysis import sparse_probe
    from interp_widgets.widgets import AutoInterpTable, ProbeView
    from interp_widgets.widgets._codec import decode_array

    s = ai.score(EXPLANATION, _records(), client=_llm(server))
    store = ai.AutoInterpStore(tmp_path / "ai.sqlite")
    store.put([ai.Entry("demo", "h", 1, "fake", "llm", EXPLANATION, s)])
    df = store.frame()
    assert df.loc[0, "detection_auc_low"] == pytest.approx(s.estimate("detection_auc").low)
    assert {"correlation", "correlation_low", "correlation_high"} <= set(df.columns)
    table = AutoInterpTable(store)
    lo = decode_array(table.columns["detection_auc_low"])[0]
    hi = decode_array(table.columns["detection_auc_high"])[0]
    e = s.estimate("detection_auc")
    assert lo == pytest.approx(e.low, abs=1e-6) and hi == pytest.approx(e.high, abs=1e-6)
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.4).astype(int)
    x = rng.normal(size=(200, 6))
    x[:, 2] += 2 * y
    r = sparse_probe(x, y, k=(1, 2), groups=np.arange(200) // 4)
    view = ProbeView(r, metric="f1")
    b = view.bases[0]
    np.testing.assert_allclose(decode_array(b["f1_low"]), [c.low for c in r.f1_ci], rtol=1e-6)
    assert b["dense_f1_ci"] == pytest.approx([r.dense_f1_ci.low, r.dense_f1_ci.high])
    assert b["split"].startswith("split by group")
