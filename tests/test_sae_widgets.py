"""FeatureBrowser and PromptFeatures: what they sync, what they answer on request, their errors,
and their static export (the browser half is in tests/e2e or test_export's Chromium checks)."""

import json

import numpy as np
import pytest
import torch
from test_sae import model_for_tests

from interp_widgets.analysis.features import (
    feature_table,
    intervene_on_feature,
    scan_features,
    search_features,
)
from interp_widgets.sae import SAE
from interp_widgets.widgets import FeatureBrowser, PromptFeatures
from interp_widgets.widgets._codec import decode_array

torch.set_num_threads(1)
DOCS = ["When Mary and John went to the store, John gave a drink to Mary.",
        "The cat sat on the mat. The cat sat on the mat again.", "Everyone wanted the apple."] * 2
PROMPT = "When Mary and John went to the store, John gave a drink to"
HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def lm(request, tmp_path_factory):
    return model_for_tests(request, tmp_path_factory)


@pytest.fixture(scope="module")
def sae(lm):
    return SAE(lm.cfg.d_model, 64, arch="topk", k=4, hook_name=HOOK, seed=0)


@pytest.fixture(scope="module")
def scan(lm, sae):
    return scan_features(lm, sae, DOCS, k=5, progress=False)


def test_scan_and_table(lm, sae, scan):
    assert scan.n_neurons == 64 and scan.hook == sae.hook_name
    assert scan.n_tokens == sum(len(lm.to_tokens(d)[0]) - 1 for d in DOCS)
    table = feature_table(scan, {3: ("fires on cats", 0.8)})
    assert len(table) == 64 and table.loc[3, "explanation"] == "fires on cats"
    f = int(table["max"].idxmax())
    assert table.loc[f, "max"] == pytest.approx(float(scan.top_values(f)[0]))
    ex = scan.top_examples(f)[0]
    assert table.loc[f, "top_token"] == ex.tokens[ex.center]
    assert search_features(table, "cats")["feature"].tolist() == [3]
    assert search_features(table, "7")["feature"].iloc[0] == 7
    dens = search_features(table, "", "density")["density"]
    assert dens.is_monotonic_decreasing
    with pytest.raises(ValueError, match="sort must be"):
        search_features(table, "", "name")


def test_feature_browser(lm, sae, scan, tmp_path):
    fb = FeatureBrowser(lm, sae, scan=scan, explanations={5: "an explanation"}, progress=False)
    assert fb.n_features == 64 and fb.stats["max"] > 0 and len(fb.nearest) == 10
    page = fb.call("list", {"query": "", "sort": "density", "offset": 10, "limit": 20})
    assert page["total"] == 64 and page["offset"] == 10
    assert decode_array(page["ids"]).shape == (20,) and len(page["labels"]) == 20
    assert np.all(np.diff(decode_array(page["density"])) <= 0)
    fb.call("select", {"feature": 5})
    assert fb.feature == 5 and fb.explanation == {"text": "an explanation", "score": None}
    ex = fb.call("examples", {})
    assert len(ex["top"]) == len(scan.top_examples(5)[:10])
    assert fb.answer("select", {"feature": 64}) == {
        "ok": False, "error": "select: feature 64 is out of range 0..63"}
    assert fb.data["table"] is not None
    path = fb.to_html(tmp_path / "fb.html")
    assert path.stat().st_size < 2_000_000
    with pytest.raises(ValueError, match="covers 64 units"):
        FeatureBrowser(lm, SAE(lm.cfg.d_model, 32, hook_name=sae.hook_name), scan=scan)


def test_a_16k_feature_sae_is_browsed_without_sending_every_feature(lm):
    """Up front the browser syncs one feature's panels; the list comes a page at a time."""
    from test_widgets import synced_arrays

    big = SAE(lm.cfg.d_model, 16_384, arch="topk", k=8, hook_name=HOOK, seed=1)
    fb = FeatureBrowser(lm, big, scan=scan_features(lm, big, DOCS, k=5, progress=False),
                        progress=False)
    arrays = synced_arrays(fb)
    assert all(16_384 not in shape for _, shape, _ in arrays), arrays
    state = {k: v for k, v in fb.get_state().items() if k not in ("_esm", "_css")}
    data_bytes = len(json.dumps(state, default=lambda v: "")) + sum(n for *_, n in arrays)
    assert data_bytes < 20_000, data_bytes
    page = fb.call("list", {"query": "", "sort": "max", "offset": 0, "limit": 50})
    assert page["total"] == 16_384 and decode_array(page["ids"]).shape == (50,)
    fb.call("select", {"feature": int(decode_array(page["ids"])[0])})
    assert len(fb.call("examples", {})["top"]) > 0


def test_feature_browser_without_scan(lm, sae):
    fb = FeatureBrowser(lm, sae)
    assert fb.stats == {} and fb.histogram is None
    page = fb.call("list", {"query": "12"})
    assert decode_array(page["ids"]).tolist() == [12]
    assert fb.call("examples", {}) == {"top": [], "buckets": []}


def test_prompt_features(lm, sae, tmp_path):
    pf = PromptFeatures(lm, sae, PROMPT, k=5)
    n = len(pf.tokens)
    assert pf.pos == n - 1 and 0 < len(pf.active) <= 4
    assert decode_array(pf.token_max).shape == (n,)
    f = pf.active[0][0]
    acts = decode_array(pf.call("feature_acts", {"feature": f})["acts"])
    assert acts.shape == (n,) and acts[-1] == pytest.approx(pf.active[0][1], rel=1e-5)
    r = pf.call("intervene", {"feature": f, "stop": 0})
    assert r["kl"] >= 0 and len(r["before"]["tokens"]) == 5
    r4 = pf.call("intervene", {"feature": f, "stop": 16})
    assert r4["value"] == pytest.approx(4 * float(acts.max()), rel=1e-5)
    want = intervene_on_feature(lm, sae, PROMPT, f, mode="clamp", value=r4["value"], pos=-1)
    assert r4["kl"] == pytest.approx(want.kl, rel=1e-5) and r4["kl"] > 0
    pf.call("select", {"pos": 2, "by": "logit", "target": ""})
    assert pf.pos == 2 and pf.by == "logit"
    contrib = [abs(c) for _, _, c in pf.active]
    assert contrib == sorted(contrib, reverse=True)
    # the clamp panel reads the selected token's next-token distribution, not the last one's
    at2 = pf.call("intervene", {"feature": f, "stop": 16})
    want2 = intervene_on_feature(lm, sae, PROMPT, f, mode="clamp", value=at2["value"], pos=2)
    assert at2["pos"] == 2 and at2["kl"] == pytest.approx(want2.kl, rel=1e-5)
    assert at2["before"]["tokens"] == [t for t, _ in want2.before] != r4["before"]["tokens"]
    assert pf.call("intervene", {"feature": f, "stop": 16, "pos": n - 1})["kl"] == \
        pytest.approx(r4["kl"], rel=1e-5)
    pf.call("set_prompt", {"prompt": "The cat sat"})
    assert pf.prompt == "The cat sat" and pf.pos == len(pf.tokens) - 1
    assert "empty" in pf.answer("set_prompt", {"prompt": " "})["error"]
    assert "out of range" in pf.answer("intervene", {"feature": 0, "stop": 17})["error"]
    assert pf.to_html(tmp_path / "pf.html").exists()


# -- the static exports in Chromium (file://, network blocked) ------------------------------------
def test_static_exports_render_and_respond(lm, sae, scan, tmp_path, browser):
    from test_export import Opened

    fb = FeatureBrowser(lm, sae, scan=scan, progress=False)
    o = Opened(browser, fb.to_html(tmp_path / "fb.html"))
    page = o.page
    page.locator(".iw-fb-row").first.wait_for()
    assert page.locator(".iw-fb-row").count() == 50
    assert page.locator(".iw-nv-top .iw-nv-example").count() == len(scan.top_examples(fb.feature))
    page.select_option("select.iw-fb-sort", "feature")
    page.wait_for_function("document.querySelector('.iw-fb-row').dataset.feature === '0'")
    o.check_clean()
    page.close()

    pf = PromptFeatures(lm, sae, PROMPT, k=3)
    o = Opened(browser, pf.to_html(tmp_path / "pf.html"))
    page = o.page
    page.locator(".iw-pf-result table.iw-topk").first.wait_for()
    assert page.locator(".iw-pf-row").count() == len(pf.active)
    page.locator(".iw-pf-slider").fill("0")
    page.locator(".iw-pf-result", has_text="ablated").wait_for()
    assert page.locator(".iw-pf-prompt").is_disabled()  # re-running needs a kernel
    o.check_clean()
    page.close()


def test_scan_matches_brute_force(lm, sae, scan):
    """Top examples, densities and bucket counts equal a direct computation over the corpus."""
    hits = []  # (feature, value, doc, pos)
    for d, doc in enumerate(DOCS):
        run = lm.run(doc, names=[sae.hook_name])
        codes = sae.encode(run.cache[sae.hook_name][0]).detach()  # [pos, d_sae]
        for p, f in (codes[1:] != 0).nonzero().tolist():
            hits.append((f, float(codes[p + 1, f]), d, p + 1))
    fires = np.bincount([h[0] for h in hits], minlength=sae.d_sae)
    np.testing.assert_allclose(scan.density.numpy(), fires / scan.n_tokens)
    for f in range(sae.d_sae):
        mine = sorted((h for h in hits if h[0] == f), key=lambda h: (-h[1], h[2], h[3]))[:5]
        got = [(e.doc, e.pos) for e in scan.top_examples(f)]
        assert got == [(h[2], h[3]) for h in mine]
        assert sum(b.count for b in scan.bucket_examples(f)) == fires[f]
    ex = scan.top_examples(int(fires.argmax()))[0]
    assert ex.acts[ex.center] == pytest.approx(ex.value) and "<|endoftext|>" not in ex.tokens


def test_random_contexts_are_a_uniform_sample_with_every_features_activations(lm, sae):
    """The shared random sample: the bottom-n positions by the hash of (doc, pos), drawn across
    batches, each window with every feature's activations, mostly zero; records_from_scan uses
    them as the random records."""
    from interp_widgets.analysis.corpus import _POS_BITS, _mix63
    from interp_widgets.autointerp import records_from_scan

    scan = scan_features(lm, sae, DOCS, k=5, n_random=6, batch_size=2, progress=False)
    codes, keys = {}, []
    for d, doc in enumerate(DOCS):
        run = lm.run(doc, names=[sae.hook_name])
        codes[d] = sae.encode(run.cache[sae.hook_name][0]).detach()  # [pos, d_sae]
        keys += [(d << _POS_BITS) | p for p in range(1, codes[d].shape[0])]
    prio = _mix63(torch.tensor(keys), 1)  # scan seed 0, + 1
    want = [keys[i] for i in torch.argsort(prio)[:6].tolist()]
    before, after = scan.meta["context"]
    silent = 0
    for f in (0, 7, sae.d_sae - 1):
        got = scan.random_examples(f)
        assert [(e.doc << _POS_BITS) | e.pos for e in got] == want
        for e in got:
            lo = max(1, e.pos - before)
            hi = min(codes[e.doc].shape[0], e.pos + after + 1)
            torch.testing.assert_close(torch.tensor(e.acts), codes[e.doc][lo:hi, f].float())
            assert e.value == pytest.approx(float(codes[e.doc][e.pos, f]))
            silent += e.value == 0
    assert silent > len(want)  # a sparse code is zero at most random positions
    recs = records_from_scan(scan, 7, n_top=3, n_random=4)
    assert [r.source for r in recs] == ["top"] * len(scan.top_examples(7)[:3]) + ["random"] * 4
    assert [r.activations for r in recs[-4:]] == [e.acts for e in scan.random_examples(7)[:4]]
