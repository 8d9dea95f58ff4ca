"""`load_sae(release, sae_id)` through a Hugging Face cache laid out as the hub lays it out
(models--org--name/snapshots/<sha>/..., refs/main) under a temporary HF_HOME, offline
(HF_HUB_OFFLINE=1, in a fresh interpreter so huggingface_hub reads both at import)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import interp_widgets as iw

SHA = "0123456789abcdef0123456789abcdef01234567"

SCRIPT = r"""
import json, sys, torch
import interp_widgets as iw
out = {}
model = iw.load_model("demo", device="cpu")
sae = iw.load_sae("gpt2-small-res-jb", "blocks.1.hook_resid_pre", model=model)
ref = iw.demo.load_sae()
x = model.run("When Mary and John went", names=[ref.hook_name]).cache[ref.hook_name]
out["jb_same"] = bool(torch.allclose(sae.encode(x), ref.encode(x)))
out["jb_hook"] = sae.hook_name
gs = iw.load_sae("gemma-scope-2b-pt-res", "layer_1/width_16k/average_l0_5", model=model)
x = model.run("When Mary and John went", names=[gs.hook_name]).cache[gs.hook_name]
p = torch.load(sys.argv[1])
pre = x @ p["W_enc"] + p["b_enc"]
want = pre.relu() * (pre > p["threshold"])
out["gs_hook"] = gs.hook_name
out["gs_encode"] = float((gs.encode(x) - want).abs().max())
out["gs_decode"] = float((gs.decode(want) - (want @ p["W_dec"] + p["b_dec"])).abs().max())
def err(f):
    try:
        f()
    except Exception as e:
        return type(e).__name__ + ": " + str(e)
    return None
out["missing"] = err(lambda: iw.load_sae("gemma-scope-2b-pt-res",
                                         "layer_3/width_16k/average_l0_9"))
out["canonical"] = err(lambda: iw.load_sae("gemma-scope-2b-pt-res-canonical",
                                           "layer_1/width_16k/canonical"))
out["wide"] = err(lambda: iw.load_sae("gemma-scope-2b-pt-res", "layer_2/width_16k/average_l0_7",
                                      model=model))
out["bad_id"] = err(lambda: iw.load_sae("gpt2-small-res-jb", "blocks.8.hook_mlp_out"))
print(json.dumps(out))
"""


def _put(hub: Path, repo: str, files: dict[str, bytes]) -> Path:
    """Lay `files` ({path in repo: bytes}) out as huggingface_hub caches a download."""
    root = hub / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(SHA)
    for name, data in files.items():
        blob = root / "blobs" / f"blob{abs(hash(name))}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / SHA / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    return root


def _npz(tmp: Path, d_in: int, d_sae: int, seed: int) -> tuple[bytes, dict]:
    g = torch.Generator().manual_seed(seed)
    p = {"W_enc": torch.randn(d_in, d_sae, generator=g) * 0.1,
         "W_dec": torch.randn(d_sae, d_in, generator=g) * 0.1,
         "b_enc": torch.randn(d_sae, generator=g) * 0.1, "b_dec": torch.randn(d_in, generator=g),
         "threshold": torch.rand(d_sae, generator=g) * 0.2}
    f = tmp / f"p{seed}.npz"
    np.savez(f, **{k: v.numpy() for k, v in p.items()})
    return f.read_bytes(), p


def test_release_ids_resolve_offline_from_the_hub_cache(tmp_path):
    hub = tmp_path / "hf" / "hub"
    ref = iw.demo.load_sae()
    jb = tmp_path / "jb"
    iw.save_sae(ref, jb)
    cfg = json.loads((jb / "cfg.json").read_text())  # the old layout of jbloom's files
    cfg["hook_point"] = cfg["metadata"].pop("hook_name")
    _put(hub, "jbloom/GPT2-Small-SAEs-Reformatted", {
        "blocks.1.hook_resid_pre/cfg.json": json.dumps(cfg).encode(),
        "blocks.1.hook_resid_pre/sae_weights.safetensors":
            (jb / "sae_weights.safetensors").read_bytes()})
    good, params = _npz(tmp_path, 128, 64, 0)
    wide, _ = _npz(tmp_path, 512, 64, 1)  # the demo's d_mlp, not its residual width
    _put(hub, "google/gemma-scope-2b-pt-res", {
        "layer_1/width_16k/average_l0_5/params.npz": good,
        "layer_2/width_16k/average_l0_7/params.npz": wide})
    torch.save(params, tmp_path / "params.pt")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(iw.__file__).parents[1])}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "params.pt")], env=env,
                          capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["jb_same"] and out["jb_hook"] == "blocks.1.hook_resid_pre"
    assert out["gs_hook"] == "blocks.1.hook_resid_post"
    assert out["gs_encode"] < 1e-5 and out["gs_decode"] < 1e-5
    missing = out["missing"]
    assert missing.startswith("FileNotFoundError") and "params.npz" in missing
    assert "HF_HUB_OFFLINE" in missing and f"snapshots/{SHA}/layer_3/width_16k" in missing
    assert "average_l0_5" in out["canonical"]  # names what the cache holds there
    wide_err = out["wide"]
    assert wide_err.startswith("SAEShapeError") and "[1, 1, 128]" in wide_err
    assert "'blocks.2.mlp.hook_post'" in wide_err  # a hook of width 512, nearest first
    assert "not an SAE id" in out["bad_id"]
