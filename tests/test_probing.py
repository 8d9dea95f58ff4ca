"""Sparse probes checked against scikit-learn called directly on the same split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from interp_widgets.analysis import probing


def data(n: int = 400, d: int = 40, seed: int = 0, noisy: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    x = rng.normal(size=(n, d))
    x[:, 3] += 2.5 * y  # strong unit
    x[:, 7] += 1.0 * y  # weaker unit
    if noisy:  # large-scale noise: a big mean difference by chance, a low F statistic
        x[:, 11] *= 100.0
    return x, y


def reference(x, y, units, seed=0, test_size=0.3):
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=y)
    tr, te = np.sort(tr), np.sort(te)
    clf = make_pipeline(StandardScaler(), LogisticRegression(
        class_weight="balanced", max_iter=2000, solver="newton-cholesky"))
    clf.fit(x[tr][:, units], y[tr])
    pred = clf.predict(x[te][:, units])
    return tr, te, f1_score(y[te], pred), accuracy_score(y[te], pred)


def test_mean_diff_probe_matches_sklearn():
    x, y = data()
    r = probing.sparse_probe(torch.tensor(x), y, k=(1, 2, 4, 64))
    assert r.k == [1, 2, 4] and r.notes  # 64 > 40 units dropped, and said so
    tr, te, _, _ = reference(x, y, [0])
    assert (r.n_train, r.n_test) == (len(tr), len(te))
    diff = np.abs(x[tr][y[tr] == 1].mean(0) - x[tr][y[tr] == 0].mean(0))
    np.testing.assert_allclose(r.unit_scores, diff)
    for kk, units, f1, acc in zip(r.k, r.selected, r.f1, r.accuracy):
        assert units == np.argsort(-diff, kind="stable")[:kk].tolist()
        _, _, f1_ref, acc_ref = reference(x, y, units)
        assert f1 == pytest.approx(f1_ref) and acc == pytest.approx(acc_ref)
    _, _, f1_all, acc_all = reference(x, y, list(range(x.shape[1])))
    assert r.dense_f1 == pytest.approx(f1_all) and r.dense_accuracy == pytest.approx(acc_all)
    assert r.selected[0] == [3]


def test_f_stat_selection_matches_select_k_best():
    x, y = data(seed=1, noisy=True)
    r = probing.sparse_probe(x, y, k=(2, 5), selection="f_stat", dense=False)
    assert probing.sparse_probe(x, y, k=(1,), dense=False).selected == [[11]]  # mean_diff
    tr, _, _, _ = reference(x, y, [0])
    for kk, units in zip(r.k, r.selected):
        want = SelectKBest(f_classif, k=kk).fit(x[tr], y[tr]).get_support(indices=True)
        assert sorted(units) == sorted(want.tolist())
    assert r.selected[0][0] == 3 and 11 not in r.selected[1]
    assert np.isnan(r.dense_f1)


def test_selection_uses_the_training_split_only():
    x, y = data(seed=2)
    sp = probing.split(y, seed=0)
    x_leak = x.copy()
    x_leak[sp.test, 20] = 100.0 * y[sp.test]  # a unit that separates only the test split
    r = probing.sparse_probe(x_leak, y, k=(1,), probe_split=sp, dense=False)
    assert r.selected == [[3]]


def test_labels_groups_and_errors():
    x, y = data(n=300)
    topics = np.where(y == 1, "sport", np.where(np.arange(300) % 2, "music", "space"))
    with pytest.raises(ValueError, match="positive="):
        probing.sparse_probe(x, topics)
    r = probing.sparse_probe(x, topics, positive="sport", k=(1,), dense=False)
    assert r.selected == [[3]] and r.positive_rate == pytest.approx(y.mean())
    groups = np.arange(300) // 10
    sp = probing.split(y, groups=groups, seed=3)
    assert not set(groups[sp.train]) & set(groups[sp.test])
    with pytest.raises(ValueError, match="labels have 20"):
        probing.sparse_probe(x[:20], y[:20] * 0 + np.arange(20))
    with pytest.raises(ValueError, match="300 examples but labels have 10"):
        probing.sparse_probe(x, y[:10])
    with pytest.raises(ValueError, match="selection"):
        probing.sparse_probe(x, y, selection="l1")


def test_compare_bases_shares_one_split():
    x, y = data()
    rng = np.random.default_rng(5)
    rotated = x @ np.linalg.qr(rng.normal(size=(40, 40)))[0]
    cmp = probing.compare_bases({"neurons": x, "rotated": rotated}, y, k=(1, 4))
    df = cmp.frame()
    assert list(df["basis"]) == ["neurons"] * 3 + ["rotated"] * 3
    assert list(df["k"]) == [1, 4, "dense"] * 2
    # the same split: a rotation changes sparse probes but not the dense one (up to the fit)
    n, r = cmp.results["neurons"], cmp.results["rotated"]
    assert n.f1[0] > r.f1[0]
    assert n.dense_accuracy == pytest.approx(r.dense_accuracy, abs=0.03)


def test_dictionary_bases_pca_matches_sklearn():
    x, _ = data(n=200, d=12)
    bases = probing.dictionary_bases(torch.tensor(x, dtype=torch.float32), n_components=5)
    assert set(bases) == {"pca", "ica"} and bases["ica"].shape == (200, 5)
    ref = PCA(n_components=5, random_state=0).fit_transform(x.astype(np.float32))
    got = bases["pca"].numpy()
    np.testing.assert_allclose(np.abs(got), np.abs(ref), atol=1e-3)  # up to each sign


def test_token_activations_and_topic_probe_on_the_demo_model(model):
    from interp_widgets.demo.corpus import corpus_with_labels

    docs = corpus_with_labels(40, seed=11)
    hook = "blocks.0.mlp.hook_post"
    ta = probing.token_activations(model, [d for d, _ in docs], [hook])
    n = ta.acts[hook].shape[0]
    assert ta.acts[hook].shape == (n, model.cfg.d_mlp) and ta.doc.shape == ta.pos.shape == (n,)
    assert len(ta.tokens) == n and int(ta.pos.min()) == 1 and int(ta.doc.max()) == 39
    labels = np.array([docs[d][1] for d in ta.doc.tolist()])
    topic = labels[0]
    r = probing.sparse_probe(ta.acts[hook], labels, positive=topic, k=(1, 8), groups=ta.doc,
                             dense=False)
    assert 0.0 <= r.f1[0] <= 1.0 and len(r.selected[1]) == 8


def test_token_rows_are_split_by_document_by_default(model):
    """Rows from token_activations carry their documents: the default split keeps each
    document on one side, and says so; a plain matrix is split by row, and says that too."""
    from interp_widgets.demo.corpus import corpus_with_labels

    docs = corpus_with_labels(60, seed=7)
    hook = "blocks.0.mlp.hook_post"
    ta = probing.token_activations(model, [d for d, _ in docs], [hook])
    topic = np.array([docs[d][1] for d in ta.doc.tolist()])
    positive = topic[0]
    grouped = probing.sparse_probe(ta, topic, positive=positive, k=(4,))
    sp = probing.split(probing.binary_labels(topic, positive), groups=ta)
    doc = ta.doc.numpy()
    assert not set(doc[sp.train]) & set(doc[sp.test])  # no document on both sides
    assert grouped.grouped_by == "document" and "split by document" in grouped.notes[-1]
    assert "none on both sides" in grouped.notes[-1]
    by_row = probing.sparse_probe(ta.matrix(), topic, positive=positive, k=(4,))
    assert by_row.grouped_by == "row" and "split by row at random" in by_row.notes[-1]
    rows = probing.split(probing.binary_labels(topic, positive))
    assert len(set(doc[rows.train]) & set(doc[rows.test])) > 50  # nearly every document
    # the same numbers as passing the documents by hand
    explicit = probing.sparse_probe(ta.matrix(), topic, positive=positive, k=(4,),
                                    groups=ta.doc)
    assert explicit.f1 == grouped.f1 and explicit.dense_f1 == grouped.dense_f1
    # selected rows keep their documents
    content = np.array([len(t.strip()) > 3 for t in ta.tokens])
    sub = ta.select(content)
    assert len(sub) == int(content.sum()) and torch.equal(sub.doc, ta.doc[content])
    r = probing.compare_bases({"mlp": sub}, topic[content], positive=positive, k=(1,),
                              dense=False)
    assert r.split.grouped_by == "document"


def test_f1_interval_by_hand():
    """Three documents: (y, pred) rows give TP/FP/FN per document (1,0,1), (0,1,0), (2,0,0);
    F1 = 2*3 / (2*3 + 1 + 1) = 0.75; without document 2 it is 2/(2+1+1) = 0.5, and with
    document 1 alone 0: the interval lies within [0, 1] around 0.75."""
    y = np.array([1, 1, 0, 1, 1])
    pred = np.array([1, 0, 1, 1, 1])
    groups = np.array([0, 0, 1, 2, 2])
    est = probing.f1_interval(y, pred, groups, n_boot=500)
    assert est.value == pytest.approx(0.75) and est.n == 3
    assert 0.0 <= est.low <= 0.75 <= est.high <= 1.0
    # rows as their own groups: n = 5
    assert probing.f1_interval(y, pred, n_boot=500).n == 5


def test_repeated_grouped_folds_give_a_mean_and_an_interval():
    x, y = data(n=300, seed=4)
    groups = np.arange(300) // 5  # 60 "documents" of 5 rows
    r = probing.sparse_probe(x, y, k=(1, 2), groups=groups, n_folds=3, repeats=2, dense=False)
    assert r.n_folds == 6 and r.grouped_by == "groups"
    folds = probing.probe_folds(y, n_folds=3, repeats=2, groups=groups)
    # the value is the mean of the folds' F1 for the unit they each select (unit 3 here)
    f1s = []
    for sp in folds:
        assert not set(groups[sp.train]) & set(groups[sp.test])
        clf = make_pipeline(StandardScaler(), LogisticRegression(
            class_weight="balanced", max_iter=2000, solver="newton-cholesky"))
        clf.fit(x[sp.train][:, [3]], y[sp.train])
        f1s.append(f1_score(y[sp.test], clf.predict(x[sp.test][:, [3]])))
    assert r.f1[0] == pytest.approx(np.mean(f1s))
    est = r.f1_ci[0]
    assert est.n == 6 and est.low < r.f1[0] < est.high
    frame = r.frame()
    assert list(frame.columns[:4]) == ["k", "f1", "f1_low", "f1_high"]
    with pytest.raises(ValueError, match="n_folds must be an int >= 2"):
        probing.sparse_probe(x, y, n_folds=1)
    with pytest.raises(ValueError, match="groups must be 'auto', None"):
        probing.sparse_probe(x, y, groups="documents")
