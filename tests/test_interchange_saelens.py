"""SAELens cached activations: `iw.cache_activations` writes them, `iw.load_cached_activations`
reads them, `train_sae` trains from them; SAELens (in its own virtualenv) reads ours and we read
what its CacheActivationsRunner writes.

References: the activations are checked against `Model.run` (TransformerLens's
run_with_cache, a different path from the cache's early-stopping hooks), the packing against the
corpus's own tokenization, and SAELens's cache against a plain PyTorch forward hook on the
Hugging Face model."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import interp_widgets as iw
from interp_widgets.interchange import contexts as ctxmod
from interp_widgets.interchange.contexts import packed_contexts

REPO = Path(__file__).parents[1]
SAELENS_PYTHON = Path(os.environ.get("IW_SAELENS_PYTHON", REPO / ".venv-saelens/bin/python"))
HOOKS = ["blocks.1.hook_resid_pre", "blocks.0.mlp.hook_post"]
needs_saelens = pytest.mark.skipif(not SAELENS_PYTHON.exists(), reason=(
    f"no SAELens virtualenv at {SAELENS_PYTHON}: `bash scripts/setup.sh --test` makes it, or "
    "point IW_SAELENS_PYTHON at its python"))

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus():
    return iw.demo.corpus(60, seed=3)


@pytest.fixture(scope="module")
def cache(model, corpus, tmp_path_factory):
    return iw.cache_activations(model, corpus, HOOKS, tmp_path_factory.mktemp("c") / "cache",
                                context_size=32, shard_contexts=20, batch_size=8,
                                progress=False)


def test_packed_rows_hold_the_corpus_tokens_in_order(model, corpus):
    rows = list(packed_contexts(model, corpus, 32))
    bos = model.tokenizer.bos_token_id
    assert all(len(r) == 32 and r[0] == bos for r in rows)
    flat = [t for r in rows for t in r[1:]]
    docs = [model.tokenizer(d, add_special_tokens=False)["input_ids"] for d in corpus]
    joined = docs[0] + [t for d in docs[1:] for t in [bos] + d]
    # row starts replace a separator BOS; apart from those the stream is the corpus in order
    assert [t for t in flat if t != bos] == [t for t in joined if t != bos][:len(
        [t for t in flat if t != bos])]


def test_cache_holds_the_models_activations(model, cache):
    assert cache.hooks == {"blocks.1.hook_resid_pre": 128, "blocks.0.mlp.hook_post": 512}
    assert cache.context_size == 32 and len(cache) >= 40
    assert len(list((cache.path).glob("data-*.arrow"))) == -(-len(cache) // 20)
    tokens = cache.token_ids(5, 13)
    run = model.run(tokens, names=HOOKS)
    for h in HOOKS:
        torch.testing.assert_close(cache.activations(h, 5, 13), run.cache[h].float(),
                                   rtol=1e-5, atol=1e-5)


def test_chunks_skip_bos_positions(cache):
    n_bos = int((cache.token_ids() == cache.bos_token_id).sum())
    rows = sum(len(c) for c in cache.chunks("blocks.1.hook_resid_pre", skip_bos=True))
    assert rows == cache.n_tokens - n_bos and n_bos >= len(cache)


def test_interrupted_cache_resumes_to_the_same_files(model, corpus, cache, tmp_path,
                                                     monkeypatch):
    real, calls = ctxmod.hook_activations, []

    def dies_on_fifth(*a, **k):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    from interp_widgets.interchange import saelens_cache

    monkeypatch.setattr(saelens_cache, "hook_activations", dies_on_fifth)
    with pytest.warns(UserWarning, match="Interrupted"):
        part = iw.cache_activations(model, corpus, HOOKS, tmp_path / "c", context_size=32,
                                    shard_contexts=20, batch_size=8, progress=False)
    assert len(part) == 20  # the first shard (3 batches) is kept, the second was cut
    (tmp_path / "c" / ".data-00009.arrow.tmp").write_bytes(b"left by a kill")
    monkeypatch.setattr(saelens_cache, "hook_activations", real)
    done = iw.cache_activations(model, corpus, HOOKS, tmp_path / "c", context_size=32,
                                shard_contexts=20, batch_size=8, progress=False)
    assert not list((tmp_path / "c").glob(".*.tmp"))
    assert len(done) == len(cache)
    assert torch.equal(done.token_ids(), cache.token_ids())
    for h in HOOKS:
        assert torch.equal(done.activations(h), cache.activations(h))


def test_resume_refuses_other_settings_corpus_or_folders(model, corpus, cache, tmp_path):
    with pytest.raises(ValueError, match="context_size: folder 32, now 16"):
        iw.cache_activations(model, corpus, HOOKS, cache.path, context_size=16,
                             shard_contexts=20, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="another corpus"):
        iw.cache_activations(model, iw.demo.corpus(60, seed=4), HOOKS, cache.path,
                             context_size=32, shard_contexts=20, batch_size=8, progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        iw.cache_activations(model, corpus, HOOKS, tmp_path, context_size=32, progress=False)
    with pytest.raises(iw.UnknownHookError):
        iw.cache_activations(model, corpus, ["blocks.1.hook_resid_pree"], tmp_path / "x")
    with pytest.raises(ValueError, match="bfloat16"):
        iw.cache_activations(model, corpus, HOOKS, tmp_path / "y", dtype="bfloat16")
    with pytest.raises(FileNotFoundError, match="state.json"):
        iw.load_cached_activations(tmp_path)


def test_train_sae_from_the_cache_matches_training_on_the_same_rows(cache):
    hook = "blocks.1.hook_resid_pre"
    rows = torch.cat(list(cache.chunks(hook, skip_bos=True)))
    kw = dict(arch="topk", d_sae=256, k=8, total_samples=40_000, batch_size=256, seed=0,
              progress=False)
    from_cache = iw.train_sae(cache.path, hook=hook, **kw)
    from_tensor = iw.train_sae(rows, **kw)

    def fve(sae):
        with torch.no_grad():
            err = (sae(rows) - rows).pow(2).sum()
        return 1 - float(err / (rows - rows.mean(0)).pow(2).sum())

    assert fve(from_cache) > 0.6
    assert abs(fve(from_cache) - fve(from_tensor)) < 0.05
    with pytest.raises(ValueError, match="several hooks"):
        iw.train_sae(cache, **kw)


@needs_saelens
def test_saelens_reads_what_we_write(cache, tmp_path):
    out = tmp_path / "read.safetensors"
    done = subprocess.run([str(SAELENS_PYTHON), str(REPO / "scripts/saelens_cache_interop.py"),
                           "read", str(cache.path), str(out)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    got = load_file(str(out))
    for h, d in cache.hooks.items():
        assert got[h].shape == (cache.n_tokens, d)
        assert torch.equal(got[h], cache.activations(h).flatten(0, 1))
        assert torch.equal(got[f"{h}.token_ids"], cache.token_ids().flatten())


@needs_saelens
def test_we_read_what_saelens_writes(cache, tmp_path):
    save_file({"tokens": cache.token_ids(0, 12).contiguous()}, str(tmp_path / "tokens.st"))
    done = subprocess.run([str(SAELENS_PYTHON), str(REPO / "scripts/saelens_cache_interop.py"),
                           "write", str(REPO / "interp_widgets/demo/model"),
                           str(tmp_path / "tokens.st"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    theirs = iw.load_cached_activations(tmp_path / "out" / "cache")
    expected = load_file(str(tmp_path / "out" / "expected.safetensors"))
    assert theirs.hooks == {"transformer.h.0": 128} and len(theirs) == info["contexts"] > 0
    assert torch.equal(theirs.token_ids(), expected["tokens"])
    torch.testing.assert_close(theirs.activations(), expected["acts"])
    assert torch.equal(theirs.token_ids(), cache.token_ids(0, len(theirs)))
