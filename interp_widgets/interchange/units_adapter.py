"""The one place where interchange meets the unit engine: how to encode a hook's activations
with a basis (an `SAE`, or any unit basis with `encode`), and what a scan knows about a unit.
Every writer in this package goes through these two functions, so a change in the engine's
names is one change here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..model import Model


@dataclass
class UnitEncoder:
    """`encode`: activations [batch, pos, d] at `hook` -> unit activations [batch, pos, n_units]
    (dense float32); `name` says what the basis is."""

    hook: str
    n_units: int
    name: str
    encode: Callable[[torch.Tensor], torch.Tensor]


def unit_encoder(model: Model, basis: Any, hook: str | None = None) -> UnitEncoder:
    """A `UnitEncoder` for `basis` at `hook` (default: the hook the basis names)."""
    if not callable(getattr(basis, "encode", None)):
        raise TypeError(f"basis must be an SAE or a unit basis with encode(); got "
                        f"{type(basis).__name__}.")
    where = hook or getattr(basis, "hook", None) or getattr(basis, "hook_name", None)
    if where is None:
        raise ValueError("This basis names no hook: pass hook=..., e.g. "
                         "hook='blocks.1.hook_resid_pre'.")
    model.check_hook_names([where])
    n_units = getattr(basis, "n_units", None) or getattr(basis, "d_sae", None)
    if n_units is None:
        raise TypeError(f"{type(basis).__name__} says neither n_units nor d_sae.")
    param = next(iter(basis.parameters()), None) if hasattr(basis, "parameters") else None

    def encode(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if param is not None:
                x = x.to(param.device, param.dtype)
            out = basis.encode(x)
            if out.is_sparse or out.layout != torch.strided:
                out = out.to_dense()
            return out.float().cpu()

    name = getattr(basis, "name", None) or type(basis).__name__
    return UnitEncoder(where, int(n_units), str(name), encode)


@dataclass
class UnitRecord:
    """What a scan knows about one unit, in the form the exporters write.

    `top` / `bottom`: Examples (doc, pos, value, tokens, acts, center), strongest first
    (`bottom` empty where the scan keeps no negative tail); `buckets`: quantile-bucket samples;
    `random`: examples at uniformly drawn corpus positions; `histogram`: (counts [bins],
    edges [bins + 1]) or None."""

    unit: int
    density: float
    max_value: float
    top: list[Any]
    bottom: list[Any]
    buckets: list[Any]
    random: list[Any]
    histogram: tuple[torch.Tensor, torch.Tensor] | None


def n_units(scan: Any) -> int:
    """How many units `scan` covers (`UnitScan.n_units`; NeuronScan/FeatureScan `n_neurons`)."""
    n = getattr(scan, "n_units", None)
    return int(n if n is not None else scan.n_neurons)


def scan_hook(scan: Any) -> str:
    return str(getattr(scan, "hook", None) or scan.meta["hook"])


def check_units(scan: Any, units: Any) -> list[int]:
    """`units` as a list of ints in range (None: every unit)."""
    total = n_units(scan)
    if units is None:
        return list(range(total))
    out = [int(u) for u in (units.tolist() if isinstance(units, torch.Tensor) else units)]
    bad = [u for u in out if not 0 <= u < total]
    if bad:
        raise IndexError(f"Units {bad[:5]} are out of range: the scan has units 0 .. "
                         f"{total - 1}.")
    if not out:
        raise ValueError("units is empty: give at least one unit id (or None for all).")
    return out


def unit_record(scan: Any, unit: int, *, n_random: int = 10) -> UnitRecord:
    """The `UnitRecord` of `unit` from a UnitScan (or a NeuronScan / FeatureScan)."""
    top = scan.top_examples(unit)
    bottom = scan.bottom_examples(unit) if hasattr(scan, "bottom_examples") else []
    buckets = scan.bucket_examples(unit) if hasattr(scan, "bucket_examples") else []
    random: list[Any] = []
    if hasattr(scan, "random_examples"):
        try:
            random = list(scan.random_examples(unit, n_random))
        except TypeError:  # FeatureScan.random_examples(unit) takes no count
            random = list(scan.random_examples(unit))[:n_random]
    hist = scan.histogram(unit) if hasattr(scan, "histogram") else None
    values = scan.top_values(unit)
    return UnitRecord(unit, float(scan.density[unit]),
                      float(values[0]) if len(values) else 0.0, top, bottom, buckets, random,
                      hist)


def unit_directions(model: Model | None, scan: Any, basis: Any = None) -> torch.Tensor | None:
    """Tensor[n_units, d_model]: each unit's output direction (an SAE's decoder rows, an MLP
    neuron's W_out row), or None when neither the basis nor the scan gives one."""
    if basis is not None:
        for attr in ("output_directions", "feature_directions", "directions"):
            fn = getattr(basis, attr, None)
            if callable(fn):
                return fn().detach().float().cpu()
    if model is not None and hasattr(scan, "layer") and "mlp" in scan_hook(scan):
        return model.bridge.blocks[scan.layer].mlp.W_out.detach().float().cpu()
    return None


def logit_effects(model: Model, directions: torch.Tensor, units: list[int], k: int = 10
                  ) -> dict[int, dict[str, list]]:
    """{unit: {"top": [(token, effect)...], "bottom": [...]}}: the k tokens whose logits each
    unit's direction raises / lowers most (direction @ W_U, centred under LayerNorm, as
    `analysis.features.feature_logit_effect` and `neurons.direct_logit_effect` compute it)."""
    w = directions[units].to(model.device)
    if str(model.cfg.normalization_type).startswith("LN"):
        w = w - w.mean(dim=-1, keepdim=True)
    with torch.no_grad():
        effect = (w @ model.bridge.W_U.float()).cpu()  # [units, vocab]
    top, bottom = effect.topk(k, dim=-1), effect.topk(k, dim=-1, largest=False)
    dec = model.tokenizer.decode
    return {u: {"top": [(dec([int(i)]), float(v)) for i, v in zip(top.indices[j], top.values[j])],
                "bottom": [(dec([int(i)]), float(v))
                           for i, v in zip(bottom.indices[j], bottom.values[j])]}
            for j, u in enumerate(units)}
