"""The SAE-vs-baselines table: JumpReLU training, L0-matched codes, offline auto-interp scores
of every dictionary's units, planted-feature recovery for every kind."""

import math

import pytest
import torch
from test_sae import model_for_tests

from interp_widgets.analysis.dictionaries import fit_dictionary
from interp_widgets.demo import corpus
from interp_widgets.sae import TopCodes, evaluate_sae, evaluation_table, toy_recovery, train_sae
from interp_widgets.sae.activations import collect_activations
from interp_widgets.sae.toy import planted_activations, planted_features, recovery

torch.set_num_threads(1)
HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def lm(request, tmp_path_factory):
    return model_for_tests(request, tmp_path_factory)


def test_jumprelu_training_recovers_planted_features():
    feats = planted_features(32, 8, seed=2)
    x = planted_activations(feats, 30000, active=2.0, seed=2)
    sae = train_sae(x, arch="jumprelu", d_sae=32, total_samples=30000, batch_size=128, lr=1e-2,
                    progress=False, seed=2)
    assert sae.arch == "jumprelu" and (sae.threshold > 0).all()
    with torch.no_grad():
        codes = sae.encode(x[:4000])
        pre = sae.encode_pre(x[:4000])
    l0 = float((codes > 0).sum(-1).float().mean())
    assert recovery(sae.W_dec.detach(), feats) > 0.8 and l0 < 5  # 2 features on per sample
    # the saved threshold gates the raw-unit pre-activations exactly
    torch.testing.assert_close(codes, pre * (pre > sae.threshold), atol=0, rtol=0)


def test_top_codes_match_l0():
    feats = planted_features(32, 8, seed=3)
    x = planted_activations(feats, 2000, seed=3)
    sae = train_sae(x, arch="standard", d_sae=32, total_samples=2000, batch_size=500,
                    progress=False)
    top = TopCodes(sae, 2)
    with torch.no_grad():
        codes, full = top.encode(x), sae.encode(x)
    assert int((codes != 0).sum(-1).max()) <= 2
    kept = codes != 0
    torch.testing.assert_close(codes[kept], full[kept])
    with pytest.raises(ValueError, match="k must be in 1 .. d_sae = 32"):
        TopCodes(sae, 33)


def test_evaluation_table_compares_every_kind_on_the_same_tokens(lm):
    docs, held = corpus(30, seed=8), corpus(4, seed=9)
    acts = collect_activations(lm, docs, HOOK, max_tokens=2000)  # the one set of tokens
    d = lm.cfg.d_model
    dicts = {
        "TopK SAE": train_sae(acts, arch="topk", k=4, d_sae=2 * d, total_samples=4000,
                              batch_size=500, hook=HOOK, progress=False),
        "PCA": fit_dictionary(lm, acts, HOOK, "pca", 32),
        "ICA": fit_dictionary(lm, acts, HOOK, "ica", 32),
    }
    rec = {"TopK SAE": 0.9, "PCA": 0.3}
    table = evaluation_table(dicts, lm, held, l0=4, autointerp_units=3, recovery=rec)
    assert list(table.index) == list(dicts)
    assert table.loc["PCA", "l0"] == pytest.approx(32, abs=0.01)
    assert (table["l0_matched"] <= 4 + 1e-9).all()
    # the TopK SAE already has L0 <= 4: cutting to 4 changes nothing
    assert table.loc["TopK SAE", "fve_at_l0"] == pytest.approx(table.loc["TopK SAE", "fve"])
    # cutting PCA's 32 codes to 4 loses variance
    assert table.loc["PCA", "fve_at_l0"] < table.loc["PCA", "fve"]
    assert (table["autointerp_units"] == 3).all()
    assert table["autointerp_correlation"].between(-1, 1).all()
    assert table.loc["TopK SAE", "toy_recovery"] == 0.9
    assert math.isnan(table.loc["ICA", "toy_recovery"])
    # an evaluation given ready-made is used as it is
    e = evaluate_sae(lm, dicts["PCA"], held, progress=False)
    again = evaluation_table({"PCA": e})
    assert again.loc["PCA", "fve"] == pytest.approx(table.loc["PCA", "fve"])
    with pytest.raises(ValueError, match="pass model= and corpus="):
        evaluation_table({"PCA": dicts["PCA"]})


@pytest.mark.slow
def test_toy_recovery_ranks_overcomplete_ica_above_complete_ica():
    rec = toy_recovery(n_features=48, d=12, n_samples=20000, batch_size=256,
                       kinds=("ICA", "overcomplete ICA", "ReLU-L1 SAE"))
    assert set(rec) == {"ICA", "overcomplete ICA", "ReLU-L1 SAE"}
    assert rec["overcomplete ICA"] > rec["ICA"] + 0.05
    assert rec["ReLU-L1 SAE"] > rec["overcomplete ICA"]
    with pytest.raises(ValueError, match="Unknown kinds"):
        toy_recovery(kinds=("NMF",))
