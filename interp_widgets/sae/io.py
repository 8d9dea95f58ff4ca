"""SAELens's on-disk format: a folder with `cfg.json` and `sae_weights.safetensors`.

Read: both config layouts (6.x nests `hook_name`/`model_name` under `metadata` beside
`sae_lens_version`; older files keep them, or `hook_point`, at the top level, and old TopK files
give k as `activation_fn_kwargs.k`), and JumpReLU's `threshold` or `log_threshold`. Write: the
6.x layout, with the `dtype` SAELens requires.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import SAEFormatError
from .sae import ARCHITECTURES, NORMALIZATIONS, SAE

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
FORMAT_VERSION = "6.0.0"  # the SAELens config layout written here (metadata nested)
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
           "bfloat16": torch.bfloat16}
_TOP_LEVEL_META = ("hook_name", "hook_point", "model_name", "hook_head_index", "context_size",
                   "prepend_bos", "dataset_path", "model_from_pretrained_kwargs",
                   "sae_lens_training_version", "neuronpedia_id", "seqpos_slice")


def _dtype(name: Any, where: Path) -> torch.dtype:
    key = str(name).removeprefix("torch.")
    if key not in _DTYPES:
        raise SAEFormatError(f"{where}: unknown dtype {name!r}; use one of {', '.join(_DTYPES)}.")
    return _DTYPES[key]


def _read_config(folder: Path) -> dict[str, Any]:
    """cfg.json as a flat dict with `metadata` (hook_name, model_name...) and `architecture`."""
    cfg_path = folder / CFG_FILE
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise SAEFormatError(f"{cfg_path} is not valid JSON ({err}).") from None
    if not isinstance(cfg, dict):
        raise SAEFormatError(f"{cfg_path} must hold a JSON object, got {type(cfg).__name__}.")
    meta = dict(cfg.get("metadata") or {})
    for key in _TOP_LEVEL_META:  # pre-6.0 layout
        if key in cfg and key not in meta:
            meta[key] = cfg[key]
    if "hook_point" in meta and "hook_name" not in meta:
        meta["hook_name"] = meta.pop("hook_point")
    cfg["metadata"] = meta
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if "architecture" not in cfg:
        topk_old = cfg.get("activation_fn", cfg.get("activation_fn_str")) == "topk"
        cfg["architecture"] = "topk" if topk_old and "k" in kwargs else "standard"
    if cfg["architecture"] == "topk" and cfg.get("k") is None and "k" in kwargs:
        cfg["k"] = kwargs["k"]
    norm = cfg.get("normalize_activations", "none")
    if isinstance(norm, bool) or norm is None:  # pre-6.0: a bool
        cfg["normalize_activations"] = "expected_average_only_in" if norm else "none"
    for key in ("d_in", "d_sae"):
        if not isinstance(cfg.get(key), int):
            raise SAEFormatError(f"{cfg_path} needs an integer {key!r}; got {cfg.get(key)!r}.")
    return cfg


def load_sae(path: str | Path, sae_id: str | None = None, *,
             device: str | torch.device | None = None,
             dtype: str | torch.dtype | None = None, model: Any = None) -> SAE:
    """Read an SAE from a SAELens-format folder (`cfg.json` + `sae_weights.safetensors`), or,
    with `sae_id`, from a SAELens release id and SAE id (``load_sae("gpt2-small-res-jb",
    "blocks.8.hook_resid_pre")``) resolved through the Hugging Face cache, offline when
    ``HF_HUB_OFFLINE=1`` (see `interp_widgets.sae.pretrained`; Gemma Scope's params.npz too).

    `dtype` defaults to the file's `dtype` field; `device` to the model's device when `model`
    is given, else CPU. Architectures: standard,
    topk, jumprelu, gated. Errors name the missing file, the unknown architecture, or the
    weight whose shape disagrees with the config. With `model`, also check that the SAE's hook
    exists there and has width d_in (the error names the hook and both shapes)."""
    from safetensors.torch import load_file

    if sae_id is not None:
        from .pretrained import load_release

        return load_release(str(path), sae_id, device=device, dtype=dtype, model=model)
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"No SAE at {str(folder)!r}: the path {what}. An SAE is a folder "
                                f"holding {CFG_FILE} and {WEIGHTS_FILE} (SAELens's format).")
    missing = [f for f in (CFG_FILE, WEIGHTS_FILE) if not (folder / f).is_file()]
    if missing:
        have = sorted(p.name for p in folder.iterdir())[:10]
        raise FileNotFoundError(f"{str(folder)!r} is missing {' and '.join(missing)}: an SAE "
                                f"folder needs {CFG_FILE} and {WEIGHTS_FILE}. It holds: "
                                f"{', '.join(have) if have else '(nothing)'}.")
    cfg = _read_config(folder)
    arch = cfg["architecture"]
    if arch not in ARCHITECTURES:
        raise SAEFormatError(f"{folder / CFG_FILE}: unknown SAE architecture {arch!r}. "
                             f"Supported: {', '.join(ARCHITECTURES)}.")
    norm = cfg.get("normalize_activations", "none")
    if norm not in NORMALIZATIONS:
        raise SAEFormatError(f"{folder / CFG_FILE}: normalize_activations {norm!r} is not "
                             f"supported; supported: {', '.join(NORMALIZATIONS)}.")
    weights = load_file(str(folder / WEIGHTS_FILE))
    if "dtype" in cfg:
        file_dtype = _dtype(cfg["dtype"], folder / CFG_FILE)
    else:
        file_dtype = weights["W_dec"].dtype if "W_dec" in weights else torch.float32
        warnings.warn(f"{folder / CFG_FILE} has no 'dtype' field, which SAELens requires; "
                      f"using the weights' dtype ({file_dtype}). sae.save() writes it.",
                      stacklevel=2)
    dt = _dtype(dtype, folder) if isinstance(dtype, str) else (dtype or file_dtype)
    sae = SAE(cfg["d_in"], cfg["d_sae"], arch=arch, k=cfg.get("k"),
              apply_b_dec_to_input=cfg.get("apply_b_dec_to_input", True),
              normalize_activations=norm,
              rescale_acts_by_decoder_norm=cfg.get("rescale_acts_by_decoder_norm", False),
              reshape_activations=cfg.get("reshape_activations") or "none",
              metadata=cfg["metadata"], dtype=dt, device="meta")
    _load_weights(sae, weights, folder / WEIGHTS_FILE)
    if device is None:
        device = model.device if model is not None else "cpu"
    sae = sae.to(device=device, dtype=dt)
    if model is not None:
        from .splice import check_saes

        check_saes(model, [sae])
    return sae


def _load_weights(sae: SAE, weights: dict[str, torch.Tensor], where: Path) -> None:
    """Put `weights` into `sae`, converting the forms older SAELens files use."""
    weights = dict(weights)
    if "log_threshold" in weights and "threshold" not in weights:
        weights["threshold"] = weights.pop("log_threshold").exp()
    if "scaling_factor" in weights:  # old finetuning scale: multiplies activations before W_dec
        scale = weights.pop("scaling_factor")
        weights["W_dec"] = weights["W_dec"] * scale[:, None].to(weights["W_dec"].dtype)
    expected = {name: tuple(p.shape) for name, p in sae.named_parameters()}
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise SAEFormatError(f"{where} lacks {', '.join(missing)}, which a {sae.arch!r} SAE "
                             f"needs (it holds {', '.join(sorted(weights))}).")
    for name, shape in expected.items():
        got = tuple(weights[name].shape)
        if got != shape:
            raise SAEFormatError(f"{where}: {name} has shape {list(got)} but cfg.json "
                                 f"(d_in={sae.d_in}, d_sae={sae.d_sae}) needs {list(shape)}.")
    sae.load_state_dict({n: weights[n] for n in expected}, assign=True)


def config_dict(sae: SAE) -> dict[str, Any]:
    """The SAELens 6.x cfg.json contents for `sae`."""
    cfg: dict[str, Any] = {
        "architecture": sae.arch,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": str(sae.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": sae.normalize_activations,
        "reshape_activations": sae.reshape_activations,
    }
    if sae.arch == "topk":
        cfg["k"] = sae.k
        cfg["rescale_acts_by_decoder_norm"] = sae.rescale_acts_by_decoder_norm
    meta = {"sae_lens_version": FORMAT_VERSION, "sae_lens_training_version": FORMAT_VERSION}
    meta.update({k: v for k, v in sae.metadata.items() if v is not None})
    cfg["metadata"] = meta
    return cfg


def _atomic_write(path: Path, write) -> None:
    """Write through `write(tmp_path)` to a temp file beside `path`, then rename it over `path`
    (with the permissions a plain new file would get)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_sae(sae: SAE, path: str | Path) -> Path:
    """Write `sae` into folder `path` in SAELens's format, each file atomically."""
    from safetensors.torch import save_file

    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {n: p.detach().contiguous().cpu() for n, p in sae.named_parameters()}
    _atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp))
    text = json.dumps(config_dict(sae), indent=2)
    _atomic_write(folder / CFG_FILE, lambda tmp: Path(tmp).write_text(text))
    return folder
