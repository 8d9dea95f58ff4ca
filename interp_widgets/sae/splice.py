"""Splicing SAEs into a model: the hook's output becomes the SAE's reconstruction (optionally plus
the error term), with features ablated, clamped or steered on the way.

    with iw.spliced(model, [sae]):                   # every run inside uses the reconstruction
        run = model.run(prompt)
    run = model.run(prompt, saes=[sae])              # the same, for one run
    run = run_with_saes(model, prompt, [sae], use_error_term=True,
                        edits=[clamp(sae, 123, 5.0)], names=[f"{sae.hook_name}.hook_sae_acts_post"])

Hooks go through TransformerLens's `bridge.hooks` context. The SAE's own activations can be
cached under SAELens's names, `{hook}.hook_sae_input`, `.hook_sae_acts_pre`, `.hook_sae_acts_post`,
`.hook_sae_recons`, `.hook_sae_error`, `.hook_sae_output`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .errors import SAEShapeError
from .sae import SAE

if TYPE_CHECKING:
    from ..model import Inputs, Model, Run

SAE_HOOKS = ("hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons",
             "hook_sae_error", "hook_sae_output")


@dataclass(frozen=True)
class FeatureEdit:
    """A change to some features' activations while an SAE is spliced in.

    mode: "ablate" (set to 0), "clamp" (set to `value`) or "steer" (add `value`).
    features: feature ids; positions: token positions it applies to (None: all)."""

    sae: SAE
    features: tuple[int, ...]
    mode: str
    value: float = 0.0
    positions: tuple[int, ...] | None = None

    def apply(self, acts: torch.Tensor) -> torch.Tensor:
        """acts [batch, pos, d_sae] (or [n, d_sae]) -> edited copy."""
        acts = acts.clone()
        f = list(self.features)
        view = acts if self.positions is None or acts.ndim < 3 else acts[:, list(self.positions)]
        if self.mode == "steer":
            view[..., f] += self.value
        else:
            view[..., f] = 0.0 if self.mode == "ablate" else self.value
        if view is not acts:
            acts[:, list(self.positions)] = view
        return acts


def _edit(sae: SAE, features: int | Sequence[int], mode: str, value: float,
          positions: int | Sequence[int] | None) -> FeatureEdit:
    feats = (features,) if isinstance(features, int) else tuple(int(f) for f in features)
    bad = [f for f in feats if not 0 <= f < sae.d_sae]
    if bad:
        raise IndexError(f"Feature id(s) {bad} out of range: this SAE has features "
                         f"0 .. {sae.d_sae - 1}.")
    pos = (positions,) if isinstance(positions, int) else (
        None if positions is None else tuple(positions))
    return FeatureEdit(sae, feats, mode, float(value), pos)


def ablate(sae: SAE, features: int | Sequence[int], *,
           positions: int | Sequence[int] | None = None) -> FeatureEdit:
    """Zero these features' activations (at `positions`, default all)."""
    return _edit(sae, features, "ablate", 0.0, positions)


def clamp(sae: SAE, features: int | Sequence[int], value: float, *,
          positions: int | Sequence[int] | None = None) -> FeatureEdit:
    """Set these features' activations to `value`."""
    return _edit(sae, features, "clamp", value, positions)


def steer(sae: SAE, features: int | Sequence[int], amount: float, *,
          positions: int | Sequence[int] | None = None) -> FeatureEdit:
    """Add `amount` to these features' activations (adds `amount * direction` to the output)."""
    return _edit(sae, features, "steer", amount, positions)


def splice_hook(sae: SAE, *, use_error_term: bool = False, edits: Sequence[FeatureEdit] = (),
                cache: dict[str, torch.Tensor] | None = None, cache_names: Sequence[str] = (),
                skip_bos: bool = False):
    """A TransformerLens forward hook that replaces the activation x [batch, pos, ...] with
    decode(edit(encode(x))) (+ the error term x - decode(encode(x)) with `use_error_term`).

    `cache_names`: SAE hook suffixes (`SAE_HOOKS`) to store into `cache` as `{hook}.{suffix}`.
    `skip_bos`: leave position 0 unchanged (for SAEs trained without the BOS activation)."""
    mine = [e for e in edits if e.sae is sae]

    def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
        flat = x.shape[-1] if getattr(sae, "reshape_activations", "none") != "hook_z" or \
            x.ndim < 2 else x.shape[-2] * x.shape[-1]
        if x.shape[-1] != sae.d_in and flat != sae.d_in:
            raise SAEShapeError(sae.hook_name, sae.d_in, tuple(x.shape))
        with torch.no_grad():
            acts = sae.encode(x)
            recons = sae.decode(acts, x).reshape(x.shape).to(x.device, x.dtype)
            edited = acts
            for e in mine:
                edited = e.apply(edited)
            out = recons if edited is acts else \
                sae.decode(edited, x).reshape(x.shape).to(x.device, x.dtype)
            error = x - recons
            if use_error_term:
                out = out + error
            if skip_bos and x.ndim >= 3:
                out = out.clone()
                out[:, 0] = x[:, 0]
            if cache is not None:
                values = {"hook_sae_input": lambda: x, "hook_sae_acts_post": lambda: edited,
                          "hook_sae_acts_pre": lambda: sae.encode_pre(x),
                          "hook_sae_recons": lambda: recons, "hook_sae_error": lambda: error,
                          "hook_sae_output": lambda: out}
                for suffix in cache_names:
                    cache[f"{sae.hook_name}.{suffix}"] = values[suffix]().detach()
        return out

    return hook


def check_saes(model: Model, saes: Sequence[SAE]) -> None:
    """Check each SAE names a hook of `model` and fits its width; errors say what is wrong."""
    for sae in saes:
        if not all(hasattr(sae, a) for a in ("encode", "decode", "d_in", "hook_name")):
            raise TypeError(f"saes must be SAE objects (or dictionaries with encode/decode), "
                            f"got {type(sae).__name__}.")
        if not sae.hook_name:
            raise ValueError("This SAE does not say which hook it reads (no hook_name in its "
                             "metadata): set sae.hook_name = 'blocks.L.hook_resid_pre' (say).")
        model.check_hook_names([sae.hook_name])
    hooks = [s.hook_name for s in saes]
    if len(set(hooks)) != len(hooks):
        raise ValueError(f"Two SAEs read the same hook ({hooks}); splice one SAE per hook.")
    widths = hook_widths(model, hooks)
    for sae in saes:
        shape = widths[sae.hook_name]
        hook_z = getattr(sae, "reshape_activations", "none") == "hook_z"
        flat = shape[-2] * shape[-1] if hook_z else shape[-1]
        if flat != sae.d_in:
            raise SAEShapeError(sae.hook_name, sae.d_in, shape,
                                _hooks_of_width(model, sae.d_in, sae.hook_name))


def _hooks_of_width(model: Model, width: int, near: str, n: int = 5) -> list[str]:
    """Up to `n` hooks of `model` that fire and whose activation's last dimension is `width`,
    the ones closest to hook `near` first (same layer, then similar names)."""
    import difflib

    fired = sorted(model.fired_hooks())
    widths = hook_widths(model, fired)
    fits = [h for h in fired if widths[h] and widths[h][-1] == width]
    return sorted(fits, key=lambda h: -difflib.SequenceMatcher(None, h, near).ratio())[:n]


def hook_widths(model: Model, hooks: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """{hook: shape of its activation for one token}, from a one-token forward pass."""
    missing = [h for h in hooks if h not in _width_cache(model)]
    if missing:
        with torch.no_grad():
            _, cache = model.bridge.run_with_cache(torch.zeros(1, 1, dtype=torch.long,
                                                               device=model.device),
                                                   names_filter=list(missing))
        for h in missing:
            _width_cache(model)[h] = tuple(cache[h].shape)
    return {h: _width_cache(model)[h] for h in hooks}


_WIDTHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _width_cache(model: Model) -> dict[str, tuple[int, ...]]:
    return _WIDTHS.setdefault(model, {})


@contextmanager
def spliced(model: Model, saes: SAE | Sequence[SAE], *, use_error_term: bool = False,
            edits: Sequence[FeatureEdit] = (), skip_bos: bool = False,
            _cache: dict[str, torch.Tensor] | None = None,
            _cache_names: dict[str, list[str]] | None = None) -> Iterator[Model]:
    """Context manager: inside it, every forward pass of `model` runs with each SAE's
    reconstruction in place of its hook's activation (see `splice_hook`)."""
    saes = [saes] if hasattr(saes, "encode") else list(saes)
    check_saes(model, saes)
    stray = [e for e in edits if all(e.sae is not s for s in saes)]
    if stray:
        raise ValueError("An edit refers to an SAE that is not spliced in; pass that SAE too.")
    fwd = [(s.hook_name, splice_hook(s, use_error_term=use_error_term, edits=edits, cache=_cache,
                                     cache_names=(_cache_names or {}).get(s.hook_name, ()),
                                     skip_bos=skip_bos))
           for s in saes]
    with model.bridge.hooks(fwd_hooks=fwd):
        yield model


def run_with_saes(model: Model, inputs: Inputs, saes: SAE | Sequence[SAE], *,
                  names: str | Sequence[str] | None = None, use_error_term: bool = False,
                  edits: Sequence[FeatureEdit] = (), skip_bos: bool = False,
                  prepend_bos: bool | None = None) -> Run:
    """`model.run` with SAEs spliced in; `names` may also hold SAE hooks such as
    ``f"{sae.hook_name}.hook_sae_acts_post"`` (Tensor[batch, pos, d_sae]), cached as given."""
    saes = [saes] if hasattr(saes, "encode") else list(saes)
    names = [names] if isinstance(names, str) else list(names or [])
    sae_names: dict[str, list[str]] = {}
    model_names = []
    for n in names:
        hook, _, suffix = n.rpartition(".")
        if suffix in SAE_HOOKS and any(s.hook_name == hook for s in saes):
            sae_names.setdefault(hook, []).append(suffix)
        elif suffix in SAE_HOOKS:
            raise ValueError(f"{n!r} names an SAE hook but no SAE given reads {hook!r}; SAEs "
                             f"given read: {[s.hook_name for s in saes]}.")
        else:
            model_names.append(n)
    extra: dict[str, torch.Tensor] = {}
    try:
        with spliced(model, saes, use_error_term=use_error_term, edits=edits, skip_bos=skip_bos,
                     _cache=extra, _cache_names=sae_names):
            run = model.run(inputs, names=model_names or None, prepend_bos=prepend_bos)
    except SAEShapeError as err:  # raised inside a hook: re-raise without torch's frames
        raise SAEShapeError(err.hook, err.expected, err.got) from None
    run.cache = {n: (extra[n] if n in extra else run.cache[n]) for n in names}
    return run
