"""Verifying interventions: knock out one unit on a behaviour's prompts and measure, per prompt,
how much of the metric goes with it.

A unit here is what a claim names: an attention head (its output z, every position or one), an
MLP neuron (mlp.hook_post), an SAE feature (its decoder contribution at the SAE's hook) or a whole
component (attn_out / mlp_out of a layer). Knocking out means replacing the unit's activation
on the clean prompt by

- ``"corrupt"``: its value on the prompt's corrupted twin (noising: what the corruption removes
  flows through the unit only if this drops the metric);
- ``"mean"``: its mean over the behaviour's clean prompts and positions (mean ablation);
- ``"zero"``.

The effect on prompt i is ``metric_clean[i] - metric_knocked_out[i]`` (positive: the unit
carries the metric), and its uncertainty is a bootstrap over prompts (`iw.bootstrap_mean`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..analysis.uncertainty import Estimate, bootstrap_mean
from ..model import Model
from .behaviour import Behaviour

KINDS = ("head", "neuron", "feature", "component")
MODES = ("corrupt", "mean", "zero")
COMPONENT_HOOKS = {"attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out"}


@dataclass(frozen=True)
class Unit:
    """kind: "head" | "neuron" | "feature" | "component"; layer; index (head, neuron or feature
    number; None for a component); component: "attn_out" | "mlp_out" for a component; position:
    None for every position, else a position index (negative counts from the end)."""

    kind: str
    layer: int
    index: int | None = None
    component: str | None = None
    position: int | None = None

    @property
    def label(self) -> str:
        where = "" if self.position is None else f"@{self.position}"
        if self.kind == "head":
            return f"L{self.layer}H{self.index}{where}"
        if self.kind == "neuron":
            return f"L{self.layer}N{self.index}{where}"
        if self.kind == "feature":
            return f"L{self.layer}F{self.index}{where}"
        return f"L{self.layer} {self.component}{where}"


def check_unit(model: Model, unit: Unit, sae: Any = None) -> Unit:
    """`unit` after checking it against the model (and the SAE for features)."""
    if unit.kind not in KINDS:
        raise ValueError(f"Unknown unit kind {unit.kind!r}; use one of {KINDS}.")
    L = model.cfg.n_layers
    if not isinstance(unit.layer, int) or not 0 <= unit.layer < L:
        raise ValueError(f"layer {unit.layer!r} is out of range: the model has layers "
                         f"0 .. {L - 1}.")
    sizes = {"head": model.cfg.n_heads, "neuron": model.cfg.d_mlp,
             "feature": None if sae is None else sae.d_sae}
    if unit.kind == "component":
        if unit.component not in COMPONENT_HOOKS:
            raise ValueError(f"component {unit.component!r} is unknown; use one of "
                             f"{sorted(COMPONENT_HOOKS)}.")
        return unit
    if unit.kind == "feature" and sae is None:
        raise ValueError("A feature unit needs the SAE it belongs to (sae=...).")
    n = sizes[unit.kind]
    if not isinstance(unit.index, int) or not 0 <= unit.index < n:
        raise ValueError(f"{unit.kind} index {unit.index!r} is out of range: use 0 .. {n - 1}.")
    return unit


def hook_of(unit: Unit, sae: Any = None) -> str:
    """The hook whose activation the knock-out edits."""
    if unit.kind == "head":
        return f"blocks.{unit.layer}.attn.hook_z"  # [batch, pos, head, d_head]
    if unit.kind == "neuron":
        return f"blocks.{unit.layer}.mlp.hook_post"  # [batch, pos, d_mlp]
    if unit.kind == "feature":
        return sae.hook_name  # [batch, pos, d_model]
    return f"blocks.{unit.layer}.{COMPONENT_HOOKS[unit.component]}"  # [batch, pos, d_model]


def _read(unit: Unit, act: torch.Tensor, sae: Any) -> torch.Tensor:
    """The unit's own value in an activation: [batch, pos, d_head] (head), [batch, pos] (neuron,
    feature), [batch, pos, d_model] (component)."""
    if unit.kind == "head":
        return act[:, :, unit.index]
    if unit.kind == "neuron":
        return act[..., unit.index]
    if unit.kind == "feature":
        return sae.encode(act.to(sae.W_enc.dtype))[..., unit.index]
    return act


def _write(unit: Unit, act: torch.Tensor, value: torch.Tensor, sae: Any,
           pos: torch.Tensor) -> torch.Tensor:
    """`act` with the unit set to `value` at positions `pos` (BoolTensor[pos])."""
    out = act.clone()
    if unit.kind == "feature":
        now = _read(unit, act, sae)  # [batch, pos]
        delta = (value.to(now.dtype) - now) * pos.to(now.dtype)  # [batch, pos]
        direction = sae.W_dec[unit.index].to(act.dtype)  # [d_model]
        return act + delta[..., None].to(act.dtype) * direction
    if unit.kind == "head":
        out[:, pos, unit.index] = value[:, pos].to(act.dtype)
    elif unit.kind == "neuron":
        out[:, pos, unit.index] = value[:, pos].to(act.dtype)
    else:
        out[:, pos] = value[:, pos].to(act.dtype)
    return out


@dataclass
class UnitEffect:
    """What knocking out `unit` did on each prompt: clean and knocked-out metric Tensor[prompt],
    `per_prompt` = clean - knocked out, and `estimate` (mean with its 95% bootstrap interval
    over prompts). `spread` is the bootstrap standard error of the mean."""

    unit: Unit
    mode: str
    clean: torch.Tensor
    knocked_out: torch.Tensor
    per_prompt: torch.Tensor
    estimate: Estimate

    @property
    def effect(self) -> float:
        return float(self.estimate.value)

    @property
    def spread(self) -> float:
        return float(self.estimate.width) / (2 * 1.959964)

    @property
    def fraction(self) -> float:
        """The mean effect as a fraction of the mean clean metric."""
        base = float(self.clean.mean())
        return self.effect / base if abs(base) > 1e-9 else float("nan")


def _positions(unit: Unit, n_pos: int) -> torch.Tensor:
    pos = torch.zeros(n_pos, dtype=torch.bool)
    if unit.position is None:
        pos[:] = True
    else:
        if not -n_pos <= unit.position < n_pos:
            raise ValueError(f"position {unit.position} is out of range for prompts of {n_pos} "
                             "tokens.")
        pos[unit.position] = True
    return pos


def unit_effect(model: Model, behaviour: Behaviour, unit: Unit, *, mode: str = "auto",
                sae: Any = None, seed: int = 0) -> UnitEffect:
    """Knock `unit` out on every prompt of `behaviour` and measure the metric's drop (see the
    module docstring). mode "auto": "corrupt" when the behaviour has corrupt twins, else "mean".
    """
    unit = check_unit(model, unit, sae)
    if mode == "auto":
        mode = "corrupt" if behaviour.corrupt is not None else "mean"
    if mode not in MODES:
        raise ValueError(f"mode must be 'auto' or one of {MODES}; got {mode!r}.")
    if mode == "corrupt" and behaviour.corrupt is None:
        raise ValueError("mode='corrupt' needs corrupt prompts; this behaviour has none "
                         "(use mode='mean').")
    name = hook_of(unit, sae)
    clean_toks = behaviour.tokens(model)
    corrupt_toks = behaviour.tokens(model, "corrupt") if mode == "corrupt" else None
    groups = behaviour.groups(model)
    mean = _mean_value(model, unit, name, clean_toks, groups, sae) if mode == "mean" else None
    clean = torch.empty(len(behaviour))
    knocked = torch.empty(len(behaviour))
    for idx in groups:
        batch = torch.stack([clean_toks[i] for i in idx]).to(model.device)  # [b, pos]
        metric = behaviour.metric(idx).bind(model)
        pos = _positions(unit, batch.shape[1]).to(model.device)
        if mode == "corrupt":
            other = torch.stack([corrupt_toks[i] for i in idx]).to(model.device)
            with torch.no_grad():
                _, cache = model.bridge.run_with_cache(other, names_filter=[name])
            value = _read(unit, cache[name], sae)
        elif mode == "mean":
            value = mean.to(model.device).expand(batch.shape[0], batch.shape[1], *mean.shape)
        else:
            value = None
        hook = _replace_hook(unit, value, sae, pos)
        with torch.no_grad():
            base = model.bridge(batch)
            out = model.bridge.run_with_hooks(batch, fwd_hooks=[(name, hook)])
        clean[idx] = metric.per_row(base).float().cpu()
        knocked[idx] = metric.per_row(out).float().cpu()
    per_prompt = clean - knocked
    return UnitEffect(unit, mode, clean, knocked, per_prompt,
                      bootstrap_mean(per_prompt.numpy(), seed=seed))


def _replace_hook(unit: Unit, value: torch.Tensor | None, sae: Any, pos: torch.Tensor
                  ) -> Callable:
    def hook(act: torch.Tensor, hook: Any = None) -> torch.Tensor:
        v = torch.zeros_like(_read(unit, act, sae)) if value is None else value
        return _write(unit, act, v, sae, pos)
    return hook


def _mean_value(model: Model, unit: Unit, name: str, toks: list[torch.Tensor],
                groups: list[list[int]], sae: Any) -> torch.Tensor:
    """The unit's mean over every clean prompt and position: [d_head], [], or [d_model]."""
    total, count = None, 0
    for idx in groups:
        batch = torch.stack([toks[i] for i in idx]).to(model.device)
        with torch.no_grad():
            _, cache = model.bridge.run_with_cache(batch, names_filter=[name])
        v = _read(unit, cache[name], sae).float()  # [b, pos, ...]
        s = v.sum((0, 1))
        total = s if total is None else total + s
        count += v.shape[0] * v.shape[1]
    return (total / count).cpu()

