"""The unit engine (`iw.scan` over every basis) against brute force, its random sample, save /
load / merge, and checkpoints (resume after an interruption and after SIGKILL; refusals)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import interp_widgets as iw
from interp_widgets.units import UnitScan

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def docs() -> list[str]:
    d = iw.demo.corpus(16, seed=3)
    d[5] = ""
    return d


@pytest.fixture(scope="module")
def bases(model):
    """One basis of each kind on the demo model."""
    resid = "blocks.1.hook_resid_pre"
    acts = iw.sae.collect_activations(model, iw.demo.corpus(40, seed=9), resid, max_tokens=3000)
    pca = iw.fit_pca(acts, 24, hook_name=resid)
    probe_w = torch.randn(3, model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    return {
        "neurons": iw.neurons(model, model.cfg.n_layers - 1),
        "sae": iw.demo.load_sae(),
        "transcoder": iw.TranscoderBasis(iw.demo.load_transcoders(), 1),
        "dictionary": pca,
        "probe": iw.ProbeBasis(probe_w, resid, bias=torch.tensor([0.5, -1.0, 0.0])),
    }


def plain_hook_acts(model, docs, layer):
    """MLP neuron activations [tokens, d_mlp] from a plain torch forward pre-hook on the HF
    module's c_proj (its input is the MLP's post-activation), one document at a time, BOS
    dropped; and the (doc, pos) of each row."""
    mod = model.bridge.get_submodule(
        f"blocks.{layer}._original_component.mlp._original_component.c_proj")
    rows, where, got = [], [], []
    handle = mod.register_forward_pre_hook(lambda m, args: got.append(args[0].detach()))
    try:
        for i, d in enumerate(docs):
            if not d:
                continue
            got.clear()
            with torch.no_grad():
                model.bridge(model.to_tokens(d))
            rows.append(got[0][0, 1:])
            where += [(i, p) for p in range(1, got[0].shape[1])]
    finally:
        handle.remove()
    return torch.cat(rows).float(), where


def cache_acts(model, basis, docs):
    """Unit activations [tokens, n_units] from TransformerLens's run_with_cache (model.run)."""
    b = iw.as_basis(basis, model)
    rows, where = [], []
    for i, d in enumerate(docs):
        if not d:
            continue
        run = model.run(d, names=[b.hook])
        with torch.no_grad():
            rows.append(b.encode(run.cache[b.hook])[0, 1:].float())
        where += [(i, p) for p in range(1, rows[-1].shape[0] + 1)]
    return torch.cat(rows), where


@pytest.fixture(scope="module")
def scans(model, bases, docs):
    return {name: iw.scan(model, b, docs, k=5, batch_size=4, n_random=50, progress=False)
            for name, b in bases.items()}


def _brute(model, bases, docs, name):
    if name == "neurons":
        return plain_hook_acts(model, docs, model.cfg.n_layers - 1)
    return cache_acts(model, bases[name], docs)


@pytest.mark.parametrize("name", ["neurons", "sae", "transcoder", "dictionary", "probe"])
def test_scan_equals_brute_force(model, bases, docs, scans, name):
    s = scans[name]
    acts, where = _brute(model, bases, docs, name)
    sparse = s.basis["sparse"]
    assert s.n_units == acts.shape[1] and s.n_tokens == acts.shape[0] and s.n_empty == 1
    a64 = acts.double()
    torch.testing.assert_close(s.mean, a64.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s.std, a64.std(0, unbiased=False), atol=1e-5, rtol=1e-5)
    units = sorted({0, min(3, s.n_units - 1), s.n_units - 1, int(acts.max(0).values.argmax())})
    for u in units:
        col = acts[:, u]
        keep = (col != 0) if sparse else torch.ones_like(col, dtype=torch.bool)
        # top-k: (value desc, doc, pos) among the unit's values (nonzero ones if sparse)
        ranked = sorted(((float(col[i]), where[i]) for i in keep.nonzero()[:, 0].tolist()),
                        key=lambda t: (-t[0], t[1]))[:5]
        torch.testing.assert_close(s.top_values(u), torch.tensor([v for v, _ in ranked]),
                                   atol=1e-5, rtol=1e-5)
        assert [(e.doc, e.pos) for e in s.top_examples(u)] == [w for _, w in ranked]
        neg = sorted(((float(col[i]), where[i]) for i in (col < 0).nonzero()[:, 0].tolist()),
                     key=lambda t: (t[0], t[1]))[:5] if s.signed else []  # unsigned: no tail
        torch.testing.assert_close(s.bottom_values(u), torch.tensor([v for v, _ in neg]),
                                   atol=1e-5, rtol=1e-5)
        assert [(e.doc, e.pos) for e in s.bottom_examples(u)] == [w for _, w in neg]
        for e in s.top_examples(u)[:2] + s.bottom_examples(u)[:2]:
            assert e.acts[e.center] == pytest.approx(e.value, abs=1e-6)
        assert sum(b.count for b in s.bucket_examples(u)) == int(keep.sum())
        # density: a > 0 for unsigned units; |a| past the threshold for signed ones
        if s.signed:
            edges = s.grid.edges()
            edges = edges[edges >= 0]
            scale = 0.1 * float(col.abs().max())
            t = float(edges[(edges >= scale).nonzero()[0, 0]])
            want = float(((col > t) | (col <= -t)).double().mean())
        else:
            want = float((col > 0).double().mean())
        assert float(s.density[u]) == pytest.approx(want, abs=1.5 / s.n_tokens)
    assert s.signed == (name in ("dictionary", "probe"))


def test_random_records_fire_at_the_corpus_rate(model):
    """The shared uniform sample: on a unit of about 3% density, the fraction of random records
    where it fires equals its corpus density within sampling error (positions drawn without
    replacement)."""
    sae = iw.demo.load_sae()
    s = iw.scan(model, sae, iw.demo.corpus(160, seed=21), k=5, n_random=4000,
                correlations=False, progress=False)
    d = s.density
    u = int((d - 0.03).abs().argmin())
    p, n, total = float(d[u]), 4000, s.n_tokens
    assert 0.02 < p < 0.04 and total > 3 * n
    records = s.random_examples(u, n)
    assert len(records) == n and len({(e.doc, e.pos) for e in records}) == n
    frac = float(s.fires(u, torch.tensor([e.value for e in records])).double().mean())
    se = math.sqrt(p * (1 - p) / n * (1 - n / total))
    assert abs(frac - p) < 4 * se, (frac, p, se)
    # the same positions for every unit, with each unit's own activations
    assert [(e.doc, e.pos) for e in s.random_examples(0, 10)] == \
        [(e.doc, e.pos) for e in records[:10]]


def test_autointerp_random_records_come_from_the_uniform_sample(scans):
    from interp_widgets.autointerp import records_from_scan

    s = scans["neurons"]
    recs = records_from_scan(s, 7, n_top=3, n_random=6)
    assert [r.source for r in recs] == ["top"] * 3 + ["random"] * 6
    assert [r.activations for r in recs[3:]] == [e.acts for e in s.random_examples(7, 6)]


def _tensors_equal(a: UnitScan, b: UnitScan, exact_sums: bool) -> None:
    ta, tb = a._tensors(), b._tensors()
    assert ta.keys() == tb.keys()
    for key in ta:
        if key in ("sum", "sumsq", "xtx") and not exact_sums:  # float64, another order
            torch.testing.assert_close(ta[key], tb[key], rtol=1e-12, atol=1e-12)
        else:
            assert torch.equal(ta[key].nan_to_num(-7.0), tb[key].nan_to_num(-7.0)), key
    for f in ("n_docs", "n_empty", "n_tokens", "n_truncated", "corpus_hash", "vocab"):
        assert a.meta[f] == b.meta[f], f


@pytest.mark.parametrize("name", ["neurons", "sae", "transcoder", "dictionary", "probe"])
def test_shards_save_load_merge(model, bases, docs, scans, name, tmp_path):
    shards = [iw.scan(model, bases[name], docs, k=5, batch_size=4, n_random=50, shard=i,
                      n_shards=2, progress=False) for i in range(2)]
    paths = [s.save(tmp_path / f"shard{i}.safetensors") for i, s in enumerate(shards)]
    merged = UnitScan.merge([UnitScan.load(p) for p in paths[::-1]])
    _tensors_equal(merged, scans[name], exact_sums=False)
    assert merged.random_examples(1, 5) == scans[name].random_examples(1, 5)
    with pytest.raises(ValueError, match="overlap"):
        UnitScan.merge([shards[0], shards[0]])


def test_merge_refuses_what_differs(model, scans, docs, tmp_path):
    with pytest.raises(ValueError, match="differ in .*basis"):
        UnitScan.merge([scans["sae"], scans["dictionary"]])
    other = iw.scan(model, iw.demo.load_sae(), docs, k=3, batch_size=4, n_random=50,
                    progress=False)
    with pytest.raises(ValueError, match=r"k \(5 vs 3\)"):
        UnitScan.merge([scans["sae"], other])
    a = iw.scan(model, iw.demo.load_sae(), docs[:8], k=5, batch_size=4, n_random=50, shard=0,
                n_shards=2, progress=False)
    b = iw.scan(model, iw.demo.load_sae(), docs, k=5, batch_size=4, n_random=50, shard=1,
                n_shards=2, progress=False)
    with pytest.raises(ValueError, match="different corpora"):
        UnitScan.merge([a, b])
    path = scans["sae"].save(tmp_path / "s.safetensors")
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=str(tmp_path / "cut.safetensors")):
        UnitScan.load(tmp_path / "cut.safetensors")


def _stream(docs, stop):
    for i, d in enumerate(docs):
        if i == stop:
            raise KeyboardInterrupt
        yield d


def test_checkpoint_resumes_to_the_uninterrupted_scan(model, bases, docs, tmp_path):
    kw = dict(k=5, batch_size=2, n_random=30, progress=False)
    whole = iw.scan(model, bases["sae"], docs, **kw)
    folder = tmp_path / "ckpt"
    part = iw.scan(model, bases["sae"], _stream(docs, 9), checkpoint=folder,
                   checkpoint_every=1, **kw)
    assert part.partial and part.n_docs == 8
    assert UnitScan.load(folder / "scan.safetensors").meta["next_batch"] == 4
    done = iw.scan(model, bases["sae"], docs, checkpoint=folder, checkpoint_every=1, **kw)
    assert not done.partial
    _tensors_equal(done, whole, exact_sums=True)
    again = iw.scan(model, bases["sae"], docs, checkpoint=folder, **kw)  # finished: reloaded
    _tensors_equal(again, whole, exact_sums=True)

    before = (folder / "scan.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"differs in k \(5 there vs 4 now\)"):
        iw.scan(model, bases["sae"], docs, checkpoint=folder, **dict(kw, k=4))
    with pytest.raises(ValueError, match="differs in basis"):
        iw.scan(model, bases["transcoder"], docs, checkpoint=folder, **kw)
    changed = list(docs)
    changed[0] = "A different first document."
    with pytest.raises(ValueError, match="corpus differs"):
        iw.scan(model, bases["sae"], changed, checkpoint=folder, **kw)
    assert (folder / "scan.safetensors").read_bytes() == before  # refused, not overwritten
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds other files"):
        iw.scan(model, bases["sae"], docs, checkpoint=tmp_path / "busy", **kw)


def test_a_corrupt_checkpoint_is_refused_with_its_path(model, bases, docs, tmp_path):
    kw = dict(k=3, batch_size=4, n_random=10, progress=False)
    folder = tmp_path / "c"
    iw.scan(model, bases["sae"], _stream(docs, 9), checkpoint=folder, checkpoint_every=1, **kw)
    assert (folder / "scan.prev.safetensors").exists()  # the one before is kept
    (folder / "scan.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="cannot be read.*kept at .*scan.prev"):
        iw.scan(model, bases["sae"], docs, checkpoint=folder, **kw)


KILLED = textwrap.dedent("""
    import sys, torch
    import interp_widgets as iw
    torch.set_num_threads(1)
    model = iw.load_model("demo", device="cpu")
    docs = iw.demo.corpus(120, seed=4)
    iw.scan(model, iw.neurons(model, 0), docs, k=5, batch_size=2, n_random=40,
            correlations=False, checkpoint=sys.argv[1], checkpoint_every=1, progress=False)
    print("finished")
""")


def _next_batch(path: Path) -> int:
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return json.loads(f.metadata()["meta"])["next_batch"]
    except Exception:  # noqa: BLE001 - mid-rename or not yet written
        return -1


def test_a_scan_killed_with_sigkill_resumes_to_the_same_result(model, tmp_path):
    folder = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(folder)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while _next_batch(folder / "scan.safetensors") < 6:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the scan never wrote a checkpoint"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    at = max(_next_batch(folder / f) for f in ("scan.safetensors", "scan.prev.safetensors"))
    assert 6 <= at < 60, at  # killed part-way
    docs = iw.demo.corpus(120, seed=4)
    kw = dict(k=5, batch_size=2, n_random=40, correlations=False, progress=False)
    resumed = iw.scan(model, iw.neurons(model, 0), docs, checkpoint=folder, **kw)
    whole = iw.scan(model, iw.neurons(model, 0), docs, **kw)
    _tensors_equal(resumed, whole, exact_sums=True)
    assert resumed.top_examples(3) == whole.top_examples(3)
