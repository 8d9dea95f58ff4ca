"""Pretrained SAEs by SAELens release id and SAE id, read from the Hugging Face cache.

SAELens's `pretrained_saes.yaml` maps a release (e.g. ``gpt2-small-res-jb``) to a hub repository
and each SAE id to a folder there. SAELens cannot be imported beside TransformerLens 4, so this
module carries the few entries below (read from that file) and resolves them the same way,
through `huggingface_hub`'s cache (``$HF_HOME/hub/models--org--name/snapshots/<sha>/...``, the
revision from ``refs/main``), so a populated cache works with ``HF_HUB_OFFLINE=1``.

Two layouts: SAELens folders (`cfg.json` + `sae_weights.safetensors`, read by `load_sae`) and
Gemma Scope's `params.npz` (JumpReLU: W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc, b_dec,
threshold).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import SAEFormatError
from .io import CFG_FILE, WEIGHTS_FILE
from .sae import SAE

NPZ_FILE = "params.npz"


@dataclass(frozen=True)
class Release:
    """One SAELens release: its hub repo, the model, the file layout ("saelens" or
    "gemma_scope"), the SAE ids it holds (a regular expression) and how an id names its folder
    and hook."""

    repo_id: str
    model: str
    layout: str
    ids: str
    example: str

    def hook(self, sae_id: str) -> str:
        """The TransformerLens hook an SAE of this release reads."""
        if self.layout == "saelens":
            return sae_id
        layer = int(re.match(r"layer_(\d+)/", sae_id).group(1))
        return f"blocks.{layer}.hook_resid_post"


#: entries of SAELens's pretrained_saes.yaml (release -> repo, model, SAE ids)
RELEASES: dict[str, Release] = {
    "gpt2-small-res-jb": Release(
        "jbloom/GPT2-Small-SAEs-Reformatted", "gpt2-small", "saelens",
        r"blocks\.(\d|1[01])\.hook_resid_pre|blocks\.11\.hook_resid_post",
        "blocks.8.hook_resid_pre"),
    "gemma-scope-2b-pt-res": Release(
        "google/gemma-scope-2b-pt-res", "gemma-2-2b", "gemma_scope",
        r"layer_(\d|1\d|2[0-5])/width_(16k|32k|65k|262k|524k|1m)/average_l0_\d+",
        "layer_12/width_16k/average_l0_82"),
    "gemma-scope-2b-pt-res-canonical": Release(
        "google/gemma-scope-2b-pt-res", "gemma-2-2b", "gemma_scope",
        r"layer_(\d|1\d|2[0-5])/width_(16k|32k|65k|262k|524k|1m)/canonical",
        "layer_12/width_16k/canonical"),
}


def _files(release: Release) -> tuple[str, ...]:
    return (CFG_FILE, WEIGHTS_FILE) if release.layout == "saelens" else (NPZ_FILE,)


def _cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _snapshot_dir(repo_id: str) -> Path | None:
    """The cached snapshot folder `refs/main` points at (None when the repo is not cached)."""
    repo = _cache_dir() / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if not ref.is_file():
        return None
    return repo / "snapshots" / ref.read_text().strip()


def _folder_in_repo(release: Release, sae_id: str) -> str:
    """The SAE's folder inside the repo. Gemma Scope's canonical ids: SAELens maps each to one
    ``average_l0_K`` folder; without that table here, the folder ``.../canonical`` is used when
    the cache holds it, and otherwise the error names the candidates."""
    if not sae_id.endswith("/canonical"):
        return sae_id
    snap = _snapshot_dir(release.repo_id)
    if snap is not None and (snap / sae_id / NPZ_FILE).is_file():
        return sae_id
    base = sae_id.removesuffix("/canonical")
    found = sorted(p.parent.name for p in (snap / base).glob(f"*/{NPZ_FILE}")) \
        if snap is not None and (snap / base).is_dir() else []
    raise FileNotFoundError(
        f"{release.repo_id}: SAELens maps {sae_id!r} to one {base}/average_l0_K folder, and "
        "that table is not shipped here. "
        + (f"The cache holds {', '.join(found)} under {snap / base}; " if found else
           f"The cache holds no folder under {base}; ")
        + "load one by its own id, e.g. load_sae('gemma-scope-2b-pt-res', "
        f"'{base}/average_l0_<K>').")


def resolve_release(release: str, sae_id: str) -> tuple[Release, Path]:
    """(release entry, local folder holding the SAE's files) from the Hugging Face cache,
    downloading the files only when the hub is reachable (not ``HF_HUB_OFFLINE``)."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    if release not in RELEASES:
        raise ValueError(f"Unknown SAE release {release!r}. Known here: "
                         f"{', '.join(sorted(RELEASES))} (a local folder path also works).")
    rel = RELEASES[release]
    if not re.fullmatch(rel.ids, sae_id):
        raise ValueError(f"{sae_id!r} is not an SAE id of {release!r}; its ids look like "
                         f"{rel.example!r}.")
    folder = _folder_in_repo(rel, sae_id)
    paths, missing = {}, []
    for name in _files(rel):
        got = try_to_load_from_cache(rel.repo_id, f"{folder}/{name}")
        if isinstance(got, str):
            paths[name] = Path(got)
        else:
            missing.append(name)
    if missing and constants.HF_HUB_OFFLINE:
        snap = _snapshot_dir(rel.repo_id)
        where = (snap / folder) if snap is not None else (
            _cache_dir() / f"models--{rel.repo_id.replace('/', '--')}" / "snapshots" /
            "<revision>" / folder)
        raise FileNotFoundError(
            f"SAE {release!r} / {sae_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE "
            f"is set: missing {', '.join(missing)} (repo {rel.repo_id}, folder {folder}); they "
            f"would be at {where}. Download them online first (huggingface_hub.hf_hub_download"
            f"({rel.repo_id!r}, '{folder}/{missing[0]}')) or unset HF_HUB_OFFLINE.")
    for name in missing:
        paths[name] = Path(hf_hub_download(rel.repo_id, f"{folder}/{name}"))
    parents = {p.parent for p in paths.values()}
    return rel, parents.pop() if len(parents) == 1 else paths[_files(rel)[0]].parent


def load_gemma_scope(path: str | Path, *, hook_name: str, model_name: str = "gemma-2-2b",
                     device: str | torch.device = "cpu",
                     dtype: str | torch.dtype | None = None) -> SAE:
    """A JumpReLU SAE from Gemma Scope's `params.npz` (a file, or a folder holding one)."""
    import numpy as np

    path = Path(path)
    file = path / NPZ_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"No {NPZ_FILE} at {file}.")
    with np.load(file) as npz:
        weights = {k: torch.from_numpy(np.asarray(npz[k])) for k in npz.files}
    need = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
    lacking = [k for k in need if k not in weights]
    if lacking:
        raise SAEFormatError(f"{file} lacks {', '.join(lacking)} (it holds "
                             f"{', '.join(sorted(weights))}); a Gemma Scope file has {need}.")
    d_in, d_sae = weights["W_enc"].shape
    if isinstance(dtype, str):
        from ..model import resolve_dtype

        dtype = resolve_dtype(dtype)
    dt = dtype or weights["W_enc"].dtype
    # Gemma Scope encodes x @ W_enc + b_enc (b_dec is not subtracted first)
    sae = SAE(d_in, d_sae, arch="jumprelu", hook_name=hook_name, model_name=model_name,
              apply_b_dec_to_input=False, dtype=dt, device="meta")
    expected = {n: tuple(p.shape) for n, p in sae.named_parameters()}
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise SAEFormatError(f"{file}: {name} has shape {list(weights[name].shape)}, but "
                                 f"W_enc [{d_in}, {d_sae}] needs {list(shape)}.")
    sae.load_state_dict({n: weights[n].to(dt) for n in expected}, assign=True)
    return sae.to(device=device, dtype=dt)


def load_release(release: str, sae_id: str, *, device: Any, dtype: Any, model: Any) -> SAE:
    """`load_sae(release, sae_id)`: resolve through the cache, read either layout, check it
    fits `model` when given."""
    from .io import load_sae

    rel, folder = resolve_release(release, sae_id)
    if rel.layout == "saelens":
        sae = load_sae(folder, device=device, dtype=dtype, model=None)
        if not sae.hook_name:
            sae.hook_name = rel.hook(sae_id)
    else:
        dev = device if device is not None else (model.device if model is not None else "cpu")
        sae = load_gemma_scope(folder, hook_name=rel.hook(sae_id), model_name=rel.model,
                               device=dev, dtype=dtype)
    sae.metadata.setdefault("release", release)
    sae.metadata.setdefault("sae_id", sae_id)
    if model is not None:
        from .splice import check_saes

        check_saes(model, [sae])
    return sae
