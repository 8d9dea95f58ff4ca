"""SteeringView: baseline and steered generations side by side, regenerated live as sliders set
the coefficient and the layer (js/src/widgets/steering.ts). Numbers come from
`analysis.steering`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import traitlets as t

from ..analysis.steering import (
    Generation,
    SteeringVector,
    compare_strengths,
    continuation_loss,
    generate,
    kl_to_baseline,
    steering_effect,
)
from ._base import BaseWidget, check_prompt, request_handler
from ._codec import encode_array


def _named_vectors(vectors: Any) -> dict[str, SteeringVector | torch.Tensor]:
    if isinstance(vectors, (SteeringVector, torch.Tensor)):
        vectors = [vectors]
    if isinstance(vectors, Mapping):
        out = dict(vectors)
    elif isinstance(vectors, Sequence) and not isinstance(vectors, str):
        out = {}
        for i, v in enumerate(vectors):
            name = v.label if isinstance(v, SteeringVector) and v.label else f"vector {i}"
            out[name if name not in out else f"{name} ({i})"] = v
    else:
        raise ValueError("vectors must be a SteeringVector, a Tensor[d_model], or a list or dict "
                         f"of them; got {type(vectors).__name__}.")
    if not out:
        raise ValueError("vectors is empty: give at least one steering vector.")
    return out


class SteeringView(BaseWidget):
    """Generate from `prompt` with and without a steering vector, with the same seed, side by
    side; steered tokens are coloured by KL(steered || baseline) of the distribution each was
    drawn from. Sliders set the coefficient and the layer; each change regenerates in the kernel.
    Beside the KL: the loss the unsteered model gives each text (`continuation_loss`, a
    coherence measure: word salad costs it far more than its own text) and, with `metric`
    (e.g. `logit_diff(" an", " a")`), the metric being steered, after `metric_prompts`
    (default: the prompt), steered and unsteered. A table compares several `strengths`
    (coefficients; default 0, c/2, c, 2c of the starting c) side by side.

    vectors: a `SteeringVector` / Tensor[d_model], or a list or {name: vector} of them."""

    _view = t.Unicode("steering").tag(sync=True)
    prompt = t.Unicode("").tag(sync=True)
    vector_names = t.List(t.Unicode()).tag(sync=True)
    vector = t.Int(0).tag(sync=True)
    n_layers = t.Int(1).tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    coeff = t.Float(4.0).tag(sync=True)
    coeff_max = t.Float(20.0).tag(sync=True)
    seed = t.Int(0).tag(sync=True)
    baseline = t.List(t.Unicode()).tag(sync=True)  # new tokens
    steered = t.List(t.Unicode()).tag(sync=True)
    kl = t.Dict().tag(sync=True)  # float32 [new tokens of the steered text]
    #: mean loss (nats / token) of the unsteered model on the steered and the baseline text
    loss = t.Float(0.0).tag(sync=True)
    loss_baseline = t.Float(0.0).tag(sync=True)
    metric_name = t.Unicode("").tag(sync=True)  # "" without a metric
    metric_value = t.Float(None, allow_none=True).tag(sync=True)  # steered
    metric_baseline = t.Float(None, allow_none=True).tag(sync=True)  # unsteered
    #: [{"coeff", "text", "mean_kl", "loss", "metric"}] for each of `strengths`
    sweep = t.List(t.Dict()).tag(sync=True)

    def __init__(self, model: Any, prompt: str, vectors: Any, *, coeff: float = 4.0,
                 layer: int | None = None, coeff_max: float | None = None,
                 max_new_tokens: int = 20, seed: int = 0, temperature: float = 1.0,
                 metric: Any = None, metric_prompts: Sequence[str] | None = None,
                 strengths: Sequence[float] | None = None) -> None:
        self._model = model
        self._vectors = _named_vectors(vectors)
        self._metric, self._metric_prompts = metric, metric_prompts
        self._strengths = [float(c) for c in (strengths if strengths is not None else
                                              (0.0, coeff / 2, coeff, 2 * coeff))]
        self._sweep_key: tuple | None = None
        self._gen = {"max_new_tokens": max_new_tokens, "temperature": temperature}
        self._baselines: dict[int, Generation] = {}
        first = next(iter(self._vectors.values()))
        start_layer = layer if layer is not None else getattr(first, "layer", 0)
        super().__init__(prompt=check_prompt(prompt), vector_names=list(self._vectors),
                         n_layers=model.cfg.n_layers,
                         metric_name=getattr(metric, "name", "metric") if metric is not None
                         else "",
                         coeff_max=coeff_max or max(20.0, 2 * abs(coeff)))
        self.result = self.steer(0, coeff, start_layer, seed)

    def steer(self, vector: int | str, coeff: float, layer: int, seed: int | None = None
              ) -> dict[str, Any]:
        """Regenerate with vector `vector` (index or name) x `coeff` at `layer`; updates the view.
        Returns {"baseline", "steered": [new tokens], "kl": Tensor[new], "mean_kl", "loss",
        "loss_baseline" (mean `continuation_loss` of each text), "metric", "metric_baseline"
        (None without a metric)}."""
        names = list(self._vectors)
        if isinstance(vector, str):
            if vector not in self._vectors:
                raise ValueError(f"unknown vector {vector!r}; choose one of {names}")
            vector = names.index(vector)
        if isinstance(vector, bool) or not isinstance(vector, int) or not \
                0 <= vector < len(names):
            raise ValueError(f"vector must be 0 .. {len(names) - 1} or a name in {names}")
        seed = self.seed if seed is None else int(seed)
        steer = [(self._vectors[names[vector]], int(layer), float(coeff))]
        steered = generate(self._model, self.prompt, steer=steer, seed=seed, **self._gen)
        if seed not in self._baselines:
            self._baselines[seed] = generate(self._model, self.prompt, seed=seed, **self._gen)
        base = self._baselines[seed]
        n = steered.n_prompt
        # distributions that produced new token i sit at position n - 1 + i
        kl = kl_to_baseline(self._model, steered.tokens, steer)[n - 1:-1]
        out = {"baseline": base.new_tokens, "steered": steered.new_tokens, "kl": kl,
               "mean_kl": float(kl.mean()) if len(kl) else 0.0,
               "loss": _mean(continuation_loss(self._model, steered)),
               "loss_baseline": _mean(continuation_loss(self._model, base)),
               "metric": None, "metric_baseline": None}
        if self._metric is not None:
            prompts = self._metric_prompts or self.prompt
            out["metric"] = float(steering_effect(self._model, prompts, self._metric,
                                                  steer).mean())
            out["metric_baseline"] = float(steering_effect(self._model, prompts,
                                                           self._metric).mean())
        key = (vector, int(layer), seed)
        sweep = self.sweep
        if key != self._sweep_key:
            rows = compare_strengths(self._model, self.prompt, self._vectors[names[vector]],
                                     int(layer), self._strengths, metric=self._metric,
                                     metric_prompts=self._metric_prompts, seed=seed, **self._gen)
            sweep = [{"coeff": r.coeff, "text": r.generation.text, "mean_kl": r.mean_kl,
                      "loss": r.loss, "metric": r.metric} for r in rows]
            self._sweep_key = key
        with self.hold_sync():
            self.vector, self.coeff, self.layer, self.seed = vector, float(coeff), int(layer), seed
            self.baseline, self.steered = out["baseline"], out["steered"]
            self.kl = encode_array(kl)
            self.loss, self.loss_baseline = out["loss"], out["loss_baseline"]
            self.metric_value, self.metric_baseline = out["metric"], out["metric_baseline"]
            self.sweep = sweep
        self.result = out
        return out

    @request_handler("steer")
    def _steer(self, vector: int, coeff: float, layer: int, seed: int) -> dict[str, Any]:
        r = self.steer(vector, coeff, layer, seed)
        return {"baseline": r["baseline"], "steered": r["steered"], "kl": encode_array(r["kl"]),
                "mean_kl": r["mean_kl"], "coeff": self.coeff, "layer": self.layer,
                "loss": r["loss"], "loss_baseline": r["loss_baseline"], "metric": r["metric"],
                "metric_baseline": r["metric_baseline"], "sweep": self.sweep}

    @property
    def data(self) -> dict[str, Any]:
        """The last result (see `steer`) and "sweep", the strengths side by side."""
        return {**self.result, "sweep": self.sweep}


def _mean(x: torch.Tensor) -> float:
    return float(x.mean()) if len(x) else float("nan")
