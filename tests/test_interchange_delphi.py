"""Delphi's latent cache: `iw.write_delphi_cache` writes it, `iw.load_delphi_cache` reads it, and
Delphi (eai-delphi, in its own virtualenv) loads what we write.

The reference for the numbers is the SAE applied to `Model.run`'s cache on the same token rows
(computed here, apart from the writer's streaming path); Delphi's side reports its own per-token
frequency and top activations."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.numpy import load_file

import interp_widgets as iw
from interp_widgets.interchange import delphi_cache
from interp_widgets.interchange.delphi_cache import split_bounds

REPO = Path(__file__).parents[1]
DELPHI_PYTHON = Path(os.environ.get("IW_DELPHI_PYTHON", REPO / ".venv-delphi/bin/python"))
HOOK = "blocks.1.hook_resid_pre"

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sae():
    return iw.demo.load_sae()


@pytest.fixture(scope="module")
def corpus():
    return iw.demo.corpus(50, seed=5)


@pytest.fixture(scope="module")
def written(model, sae, corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("delphi")
    return iw.write_delphi_cache(model, sae, corpus, root, context_size=32, n_splits=3,
                                 batch_size=8, progress=False)


@pytest.fixture(scope="module")
def reference(model, sae, written):
    tokens = written.tokens()
    with torch.no_grad():
        return sae.encode(model.run(tokens, names=[HOOK]).cache[HOOK]).float()  # [n, ctx, d_sae]


def test_layout_is_delphis(written, sae):
    folder = written.path / HOOK
    names = sorted(p.name for p in folder.glob("*.safetensors"))
    assert names == sorted(f"{a}_{b}.safetensors" for a, b in split_bounds(sae.d_sae, 3))
    assert split_bounds(1024, 3) == [(0, 340), (341, 681), (682, 1023)]
    config = json.loads((folder / "config.json").read_text())
    assert {"dataset_repo", "dataset_split", "dataset_name", "dataset_column", "batch_size",
            "cache_ctx_len", "n_tokens", "n_splits", "model_name"} <= config.keys()
    part = load_file(str(folder / "341_681.safetensors"))
    assert part["locations"].dtype.name == "uint16" and part["locations"].shape[1] == 3
    assert part["activations"].dtype.name == "float16"
    assert int(part["locations"][:, 2].max()) <= 681 - 341  # latent ids relative to the split
    assert part["tokens"].shape == (config["n_tokens"] // 32, 32)


def test_cache_holds_the_saes_nonzero_activations(written, reference):
    dense = written.dense()
    assert dense.shape == reference.shape
    kept = reference.abs() > delphi_cache.THRESHOLD
    assert torch.equal(dense != 0, kept)
    torch.testing.assert_close(dense, reference * kept, rtol=2e-3, atol=2e-3)  # float16


def test_interrupted_write_resumes_to_equal_files(model, sae, corpus, written, tmp_path,
                                                  monkeypatch):
    real, calls = delphi_cache.hook_activations, []

    def dies_on_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(delphi_cache, "hook_activations", dies_on_third)
    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning, match="Interrupted"):
        iw.write_delphi_cache(model, sae, corpus, tmp_path, context_size=32, n_splits=3,
                              batch_size=8, progress=False)
    monkeypatch.setattr(delphi_cache, "hook_activations", real)
    with pytest.raises(ValueError, match="n_splits: folder 3, now 4"):
        iw.write_delphi_cache(model, sae, corpus, tmp_path, context_size=32, n_splits=4,
                              batch_size=8, progress=False)
    again = iw.write_delphi_cache(model, sae, corpus, tmp_path, context_size=32, n_splits=3,
                                  batch_size=8, progress=False)
    for (_, _, a), (_, _, b) in zip(again.splits[HOOK], written.splits[HOOK]):
        assert a.read_bytes() == b.read_bytes()
    with pytest.raises(FileExistsError, match="already holds files"):
        iw.write_delphi_cache(model, sae, corpus, tmp_path, context_size=32, n_splits=3,
                              progress=False)


@pytest.mark.skipif(not DELPHI_PYTHON.exists(), reason=(
    f"no Delphi virtualenv at {DELPHI_PYTHON}: `bash scripts/setup.sh --test` makes it "
    "(eai-delphi from PyPI, without vLLM), or point IW_DELPHI_PYTHON at its python"))
def test_delphi_loads_what_we_write(written, reference, tmp_path):
    out = tmp_path / "delphi.json"
    done = subprocess.run([str(DELPHI_PYTHON), str(REPO / "scripts/delphi_interop.py"), "read",
                           str(written.path), str(REPO / "interp_widgets/demo/model"), str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    records = json.loads(out.read_text())[HOOK]
    kept = reference.abs() > delphi_cache.THRESHOLD
    alive = kept.any(dim=(0, 1)).nonzero()[:, 0].tolist()
    assert sorted(int(u) for u in records) == alive
    freq = kept.float().mean(dim=(0, 1))
    tokens = written.tokens()
    for u in alive[:: max(1, len(alive) // 40)]:
        r = records[str(u)]
        assert r["frequency"] == pytest.approx(float(freq[u]), rel=1e-6)
        assert r["max_activation"] == pytest.approx(float(reference[..., u].max()), abs=2e-3,
                                                    rel=2e-3)
        # its top example is a window of our token rows around our largest activation
        c, p = divmod(int(reference[..., u].argmax()), reference.shape[1])
        window = tokens[c].tolist()
        assert any(window[i:i + len(r["top_tokens"])] == r["top_tokens"]
                   for i in range(len(window))) and tokens[c, p] in r["top_tokens"]
