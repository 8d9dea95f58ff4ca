"""iw.dashboards: one offline page with the dashboards of every latent of the demo SAE (1,024),
each unit's data in its own compressed block decoded when opened; the Python answers, and the
page in headless Chromium (search, open a unit, the content equals the scan's)."""

from __future__ import annotations

import re
import time

import pytest
import torch

import interp_widgets as iw
from interp_widgets.widgets import UnitDashboards
from interp_widgets.widgets._codec import decode_array

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sae():
    return iw.demo.load_sae()


@pytest.fixture(scope="module")
def scan(model, sae):
    return iw.scan(model, sae, iw.demo.corpus(40, seed=2), k=8, n_random=20, progress=False)


def test_unit_answers_are_the_scans(model, sae, scan):
    view = UnitDashboards(scan, [3, 17, 600], model=model, basis=sae)
    assert view.labels[0] == scan.meta["vocab"].get(str(int(scan.top_token_ids()[3])), "")
    u = 17
    r = view.call("unit", {"unit": u})
    assert [(e["doc"], e["pos"]) for e in r["top"]] == \
        [(e.doc, e.pos) for e in scan.top_examples(u)[:10]]
    assert r["stats"]["density"] == pytest.approx(float(scan.density[u]))
    assert [(e["doc"], e["pos"]) for e in r["random"]] == \
        [(e.doc, e.pos) for e in scan.random_examples(u, 5)]
    # logit effect: the decoder row through the unembedding (LayerNorm folded: mean removed)
    w = sae.W_dec[u].detach().float()
    eff = (w - w.mean()) @ model.bridge.W_U.float().detach()
    best = model.tokenizer.decode([int(eff.argmax())])
    assert r["logit_effect"]["top"][0][0] == best
    counts = decode_array(r["histogram"]["counts"])
    assert counts.sum() == sum(b["count"] for b in r["buckets"])
    with pytest.raises(ValueError, match="not on this page"):
        view.call("unit", {"unit": 5})
    with pytest.raises(IndexError, match="out of range"):
        UnitDashboards(scan, [5000])


def test_a_1024_unit_page_offline_in_chromium(model, sae, scan, tmp_path, browser):
    from test_export import Opened

    t0 = time.perf_counter()
    path = iw.dashboards(scan, None, tmp_path / "page.html", model=model, basis=sae)
    written = time.perf_counter() - t0
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]  # no per-unit files
    text = path.read_text()
    assert text.count('type="application/x-iw-lazy"') == 1024
    assert not re.search(r"(src|href)=\"https?:", text)
    size_mb = path.stat().st_size / 1e6

    t0 = time.perf_counter()
    o = Opened(browser, path)
    page = o.page
    page.locator(".iw-ud-row").first.wait_for()
    first_rows = time.perf_counter() - t0
    fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime")
    assert page.locator(".iw-ud-row").count() == 200  # the first 200 of 1,024 listed
    assert "1024 units" in page.locator(".iw-ud-count").inner_text()

    u = 517
    page.locator(".iw-ud-search").fill(str(u))
    page.wait_for_function("document.querySelector('.iw-ud-row')?.dataset.unit === '517'")
    page.locator(f'.iw-ud-row[data-unit="{u}"]').click()
    page.wait_for_function(f"document.querySelector('.iw-ud-title').textContent.startsWith("
                           f"'unit {u}')")
    top = scan.top_examples(u)[:10]
    assert page.locator(".iw-nv-top .iw-nv-example").count() == len(top)
    first = page.locator(".iw-nv-top .iw-nv-example").first
    assert first.get_attribute("data-doc") == str(top[0].doc)
    assert first.get_attribute("data-pos") == str(top[0].pos)
    assert "".join(top[0].tokens).strip()[:12].replace(" ", "") in \
        first.inner_text().replace("·", "").replace(" ", "").replace("\n", "")
    assert page.locator(".iw-ud-random .iw-nv-example").count() == 5
    opened = page.evaluate("""() => {
        const m = performance.measure('open', 'iw-unit-open-start', 'iw-unit-open-end');
        return m.duration; }""")
    o.check_clean()
    page.close()
    print(f"\n1,024-unit page: {size_mb:.2f} MB, written in {written:.1f} s; first contentful "
          f"paint {fcp:.0f} ms, list shown {first_rows * 1000:.0f} ms after goto; opening "
          f"unit {u}: {opened:.1f} ms")
    assert fcp is not None and opened < 1000
