"""scan_neurons / NeuronScan against brute force on a small corpus, plus sharding, persistence,
interruption and bad input."""

from __future__ import annotations

import os
import signal

import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis.corpus import NeuronScan, _defer_interrupt, scan_neurons

torch.set_num_threads(1)
LAYER, HOOK = 1, "blocks.1.mlp.hook_post"


@pytest.fixture(scope="module")
def docs() -> list[str]:
    d = iw.demo.corpus(14, seed=11)
    d[3] = ""  # an empty document, skipped and counted
    return d


@pytest.fixture(scope="module")
def scan(model, docs) -> NeuronScan:
    return scan_neurons(model, docs, LAYER, k=6, batch_size=4, progress=False)


@pytest.fixture(scope="module")
def brute(model, docs):
    """Every non-BOS activation of the layer, one document at a time: (acts [tokens, neuron],
    doc index [tokens], position [tokens], token rows)."""
    acts, where, rows = [], [], {}
    for i, d in enumerate(docs):
        if not d:
            continue
        run = model.run(d, names=[HOOK])
        rows[i] = run.tokens[0]
        a = run.cache[HOOK][0, 1:]
        acts.append(a)
        where += [(i, p) for p in range(1, a.shape[0] + 1)]
    return torch.cat(acts).float(), torch.tensor(where), rows


def test_top_values_and_stats_match_brute_force(scan, brute):
    acts, _, _ = brute
    assert scan.n_tokens == acts.shape[0]
    assert scan.n_docs == 14 and scan.n_empty == 1 and not scan.partial
    for n in (0, 5, 17):
        torch.testing.assert_close(scan.top_values(n), acts[:, n].topk(6).values, atol=1e-5,
                                   rtol=1e-5)
    a64 = acts.double()
    torch.testing.assert_close(scan.mean, a64.mean(0), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(scan.std, a64.std(0, unbiased=False), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(scan.density, (acts > 0).double().mean(0))
    corr = torch.corrcoef(a64.T)
    for n in (5, scan.n_neurons - 1):  # sum x x^T is stored in blocks: check across them
        torch.testing.assert_close(scan.correlations(n), corr[n], atol=1e-5, rtol=1e-5)
    counts, edges = scan.histogram(5)
    assert counts.sum() == scan.n_tokens and edges.shape[0] == counts.shape[0] + 1
    # bins are (lo, hi] (so an activation of exactly 0 counts below the middle edge), and the
    # outer bins also count the values beyond the grid
    bins = torch.bucketize(acts[:, 5].double(), edges.double(), right=False) - 1
    ref = torch.bincount(bins.clamp(0, counts.shape[0] - 1), minlength=counts.shape[0])
    assert (counts - ref).abs().sum() <= 2  # the same bins, up to edge rounding


def test_last_layer_scan_matches_brute_force(model, docs):
    """The last layer too (the forward pass stops at the hook; TL's stop_at_layer would not stop
    before the unembedding there), in padded batches."""
    last = model.cfg.n_layers - 1
    hook = f"blocks.{last}.mlp.hook_post"
    s = scan_neurons(model, docs, last, k=4, batch_size=4, progress=False, correlations=False)
    acts = torch.cat([model.run(d, names=[hook]).cache[hook][0, 1:] for d in docs if d]).float()
    for n in (0, 9, s.n_neurons - 1):
        torch.testing.assert_close(s.top_values(n), acts[:, n].topk(4).values, atol=1e-5,
                                   rtol=1e-5)
    torch.testing.assert_close(s.mean, acts.double().mean(0), atol=1e-6, rtol=1e-6)


def test_top_examples_point_at_the_right_tokens(model, scan, brute):
    _, _, rows = brute
    examples = scan.top_examples(5)
    assert len(examples) == 6
    assert [e.value for e in examples] == sorted((e.value for e in examples), reverse=True)
    for e in examples:
        assert e.pos >= 1  # never BOS
        assert e.tokens[e.center] == model.to_str_tokens(rows[e.doc][e.pos: e.pos + 1])[0]
        assert e.acts[e.center] == pytest.approx(e.value)
        assert len(e.tokens) == len(e.acts) <= sum(scan.meta["context"]) + 1


def test_bucket_samples_lie_in_their_buckets(scan):
    buckets = scan.bucket_examples(5)
    assert sum(b.count for b in buckets) == scan.n_tokens
    assert buckets[0].q_hi == pytest.approx(1.0) and buckets[-1].q_lo == 0.0
    for b in buckets:
        assert 0 < len(b.examples) <= min(b.count, 5)
        assert all(b.lo < e.value <= b.hi or b is buckets[0] or b is buckets[-1]
                   for e in b.examples)


def _assert_same(a: NeuronScan, b: NeuronScan) -> None:
    ta, tb = a._tensors(), b._tensors()
    assert ta.keys() == tb.keys()
    for key in ta:
        if key in ("sum", "sumsq", "xtx"):  # float64 sums, added in another order
            torch.testing.assert_close(ta[key], tb[key], rtol=1e-12, atol=1e-12)
        else:  # examples, histograms and counts: bit-identical
            assert torch.equal(ta[key].nan_to_num(-7.0), tb[key].nan_to_num(-7.0)), key
    for f in ("n_docs", "n_empty", "n_tokens", "n_truncated"):
        assert a.meta[f] == b.meta[f], f


def test_shards_merge_into_the_single_scan(model, docs, scan):
    shards = [scan_neurons(model, docs, LAYER, k=6, batch_size=4, shard=i, n_shards=3,
                           progress=False) for i in range(3)]
    merged = NeuronScan.merge(shards[::-1])
    assert merged.meta["shards"] == [0, 1, 2] and not merged.partial
    _assert_same(merged, scan)
    assert merged.top_examples(5) == scan.top_examples(5)
    with pytest.raises(ValueError, match="overlap"):
        NeuronScan.merge([shards[0], shards[0]])
    other = scan_neurons(model, docs[:4], LAYER, k=3, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="k \\(6 vs 3\\)"):
        NeuronScan.merge([scan, other])


def test_save_load_round_trip_is_atomic(scan, tmp_path):
    path = scan.save(tmp_path / "scan.safetensors")
    scan.save(path)  # overwriting goes through a temporary file and a rename
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.safetensors"]
    loaded = NeuronScan.load(path)
    _assert_same(loaded, scan)
    assert loaded.top_examples(7) == scan.top_examples(7)
    assert loaded.bucket_examples(7) == scan.bucket_examples(7)
    (tmp_path / "other.safetensors").write_bytes(b"not a scan")
    with pytest.raises(ValueError, match="not a safetensors file"):
        NeuronScan.load(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="No unit scan"):
        NeuronScan.load(tmp_path / "missing.safetensors")


def test_interrupt_returns_the_partial_scan(model, docs):
    def stream():
        for i, d in enumerate(docs):
            if i == 9:
                raise KeyboardInterrupt
            yield d

    part = scan_neurons(model, stream(), LAYER, k=6, batch_size=4, progress=False)
    assert part.partial and part.n_docs == 8  # two whole batches
    assert "PARTIAL" in repr(part)
    prefix = scan_neurons(model, docs[:8], LAYER, k=6, batch_size=4, progress=False)
    _assert_same(part, prefix)


def test_sigint_during_an_update_is_held_until_the_batch_is_folded_in():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with _defer_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            done.append(True)
    assert done == [True]


def test_token_ids_one_document_and_memory(model, docs):
    ids = [model.tokenizer(d, add_special_tokens=False)["input_ids"] for d in docs[:2]]
    a = scan_neurons(model, docs[:2], LAYER, k=4, progress=False)
    b = scan_neurons(model, ids, LAYER, k=4, progress=False)
    _assert_same(a, b)
    one = scan_neurons(model, ["Mary went to the store."], LAYER, k=4, progress=False)
    assert one.n_docs == 1 and one.n_tokens == len(model.to_str_tokens("Mary went to the store."))-1
    assert len(one.top_values(0)) == 4
    # state size does not depend on the corpus length (the random sample's sparse windows are
    # bounded by n_random x width x units, and hold what its positions' windows hold)
    size = {k: v.numel() for k, v in one._tensors().items() if not k.startswith("random.")}
    assert size == {k: v.numel() for k, v in a._tensors().items()
                    if not k.startswith("random.")}


def test_bad_input(model, scan):
    with pytest.raises(ValueError, match=r"use 0 \.\. "):
        scan_neurons(model, ["x"], model.cfg.n_layers, progress=False)
    with pytest.raises(ValueError, match="Valid choices: 'mlp.hook_post', 'mlp.hook_pre'"):
        scan_neurons(model, ["x"], 0, hook="attn.hook_z", progress=False)
    with pytest.raises(TypeError, match="not one string"):
        scan_neurons(model, "a single string", 0, progress=False)
    with pytest.raises(TypeError, match="Corpus item 1"):
        scan_neurons(model, ["fine", 3.5], 0, progress=False)
    with pytest.raises(ValueError, match=f"use 0 .. {scan.n_neurons - 1}"):
        scan.top_values(scan.n_neurons)
    with pytest.raises(ValueError, match="shard must be in 0 .. 1"):
        scan_neurons(model, ["x"], 0, shard=2, n_shards=2, progress=False)
