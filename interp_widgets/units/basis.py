"""A unit is one coordinate of a basis read at a hook. `Basis` is the protocol every scan,
dashboard and exporter is written against; this module has its implementations:

- `NeuronBasis` (`iw.neurons(model, layer)`): the neurons of an MLP, read at `mlp.hook_post`
  (on a gated MLP that is the product act(gate) * up, which is signed);
- `SAEBasis`: the latents of an `SAE` (or anything with `encode`, `d_sae`, `hook_name`);
- `TranscoderBasis`: one layer's latents of a `Transcoders` set, read at the MLP's input;
- `DictionaryBasis`: the directions of a `LinearDictionary` (PCA / ICA), signed;
- `ProbeBasis`: probe directions (x @ w + b), signed.

`as_basis(obj, model)` turns an SAE, a LinearDictionary or a basis into a basis.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from ..model import Model


@runtime_checkable
class Basis(Protocol):
    """What a scan needs of a basis.

    kind: "neurons", "sae", "transcoder", "dictionary", "probe" (or your own);
    hook: the full hook name it reads; n_units; signed: whether units take both signs in
    earnest (then density counts |a| above a threshold, and bottom examples matter);
    sparse: whether 0 means "off" (SAE latents): a scan then folds in only nonzero values.
    encode(acts [batch, pos, d] at `hook`) -> Tensor[batch, pos, n_units] (dense or sparse);
    output_directions() -> Tensor[n_units, d_model] or None (for logit effects, nearest units);
    unit_label(u) -> a short name; describe() -> a JSON-able dict that identifies the basis
    (kind, hook, n_units, signed, fingerprint of its weights) for checkpoints and merges."""

    kind: str
    hook: str
    n_units: int
    signed: bool
    sparse: bool

    def encode(self, acts: torch.Tensor) -> torch.Tensor: ...

    def output_directions(self) -> torch.Tensor | None: ...

    def unit_label(self, unit: int) -> str: ...

    def describe(self) -> dict[str, Any]: ...


def fingerprint(tensors: list[torch.Tensor]) -> str:
    """A short hash of tensors' shapes and of up to 4,096 evenly strided values of each: cheap
    on a 2B model, and any retraining or edit of the weights changes it."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach()
        flat = t.reshape(-1)
        step = max(1, flat.numel() // 4096)
        h.update(repr(tuple(t.shape)).encode())
        h.update(flat[::step].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def model_fingerprint(model: Model) -> str:
    """`fingerprint` of the model's parameters (cached on the model)."""
    fp = getattr(model, "_iw_fingerprint", None)
    if fp is None:
        fp = fingerprint([p for _, p in sorted(model.bridge.named_parameters())])
        model._iw_fingerprint = fp
    return fp


def _layer_of(hook: str) -> int:
    parts = hook.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1


class _Base:
    kind = "basis"
    signed = False
    sparse = False

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "hook": self.hook, "n_units": int(self.n_units),
                "signed": bool(self.signed), "sparse": bool(self.sparse),
                "layer": _layer_of(self.hook), "fingerprint": self._fingerprint()}

    def _fingerprint(self) -> str:
        d = self.output_directions()
        return fingerprint([d]) if d is not None else ""

    def unit_label(self, unit: int) -> str:
        return f"{self.kind}:{unit}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hook}, {self.n_units} units)"


class NeuronBasis(_Base):
    """The neurons of layer `layer`'s MLP at `hook` ("mlp.hook_post" by default; "mlp.hook_pre"
    too). On gated MLPs (Llama, Gemma, Qwen) hook_post is act(gate) * up: a neuron there is
    signed. Output directions: the MLP's W_out rows [d_mlp, d_model]."""

    kind = "neurons"

    def __init__(self, model: Model, layer: int, hook: str = "mlp.hook_post"):
        from ..analysis._checks import d_mlp, mlp_hook

        self.hook = mlp_hook(model, layer, hook)
        self.layer, self.n_units = int(layer), d_mlp(model)
        gated = bool(getattr(model.cfg, "gated_mlp", False))
        self.signed = gated and self.hook.endswith("hook_post")
        self._model = model

    def __getstate__(self) -> dict[str, Any]:  # the model is not shipped to Ray workers
        return {k: v for k, v in self.__dict__.items() if k != "_model"}

    def bind(self, model: Model) -> NeuronBasis:
        self._model = model
        return self

    def encode(self, acts: torch.Tensor) -> torch.Tensor:
        return acts

    def output_directions(self) -> torch.Tensor | None:
        if getattr(self, "_model", None) is None:
            return None
        return self._model.bridge.blocks[self.layer].mlp.W_out.detach().float()  # [d_mlp, d]

    def _fingerprint(self) -> str:
        return ""  # the model's fingerprint covers the neurons

    def unit_label(self, unit: int) -> str:
        return f"L{self.layer}/N{unit}"


class SAEBasis(_Base):
    """The latents of an SAE (anything with `encode`, `d_sae`, `hook_name`; `W_dec` or
    `feature_directions()` for output directions). ReLU, TopK, JumpReLU and gated codes are
    >= 0: unsigned."""

    kind = "sae"
    sparse = True

    def __init__(self, sae: Any):
        if not sae.hook_name:
            raise ValueError("This SAE does not say which hook it reads (no hook_name in its "
                             "metadata): set sae.hook_name = 'blocks.L.hook_resid_pre' (say).")
        self.sae, self.hook, self.n_units = sae, str(sae.hook_name), int(sae.d_sae)

    def encode(self, acts: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.sae.encode(acts)

    def output_directions(self) -> torch.Tensor | None:
        fn = getattr(self.sae, "feature_directions", None)
        d = fn() if callable(fn) else getattr(self.sae, "W_dec", None)
        return None if d is None else d.detach().float()

    def _fingerprint(self) -> str:
        if hasattr(self.sae, "named_parameters"):
            return fingerprint([p for _, p in sorted(self.sae.named_parameters())])
        weights = [getattr(self.sae, a, None) for a in ("W_enc", "b_enc", "W_dec", "b_dec")]
        weights = [w for w in weights if isinstance(w, torch.Tensor)]
        return fingerprint(weights) if weights else super()._fingerprint()

    def unit_label(self, unit: int) -> str:
        return f"F{unit}"


class TranscoderBasis(_Base):
    """Layer `layer`'s latents of a `Transcoders` set: read at the MLP's input
    (`tcs.input_hook_name(layer)`); output directions: their decoder rows to that layer's MLP
    output [d_tc, d_out]."""

    kind = "transcoder"
    sparse = True

    def __init__(self, transcoders: Any, layer: int):
        n = transcoders.n_layers
        if not 0 <= int(layer) < n:
            raise ValueError(f"layer {layer} is out of range: these transcoders cover layers "
                             f"0 .. {n - 1}.")
        self.transcoders, self.layer = transcoders, int(layer)
        self.hook = transcoders.input_hook_name(self.layer)
        self.n_units = int(transcoders.d_transcoder)

    def encode(self, acts: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.transcoders.encode(self.layer, acts)

    def output_directions(self) -> torch.Tensor | None:
        return self.transcoders.decoder(self.layer, self.layer).detach().float()

    def _fingerprint(self) -> str:
        t = self.transcoders
        return fingerprint([t.W_enc[self.layer], t.b_enc[self.layer],
                            t.decoder(self.layer, self.layer)])

    def unit_label(self, unit: int) -> str:
        return f"T{self.layer}/{unit}"


class DictionaryBasis(_Base):
    """The directions of a `LinearDictionary` (PCA / ICA, `analysis.dictionaries`): codes
    (x - b_dec) @ W_enc, both signs meaningful."""

    kind = "dictionary"
    signed = True

    def __init__(self, dictionary: Any):
        if not dictionary.hook_name:
            raise ValueError("This dictionary does not say which hook it reads: fit it with "
                             "hook_name=... (fit_dictionary does) or set .hook_name.")
        self.dictionary, self.hook = dictionary, str(dictionary.hook_name)
        self.n_units = int(dictionary.d_sae)
        self.sparse = getattr(dictionary, "k", None) is not None  # top-k codes: 0 is "off"

    def encode(self, acts: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.dictionary.encode(acts)

    def output_directions(self) -> torch.Tensor | None:
        return self.dictionary.W_dec.detach().float()

    def _fingerprint(self) -> str:
        d = self.dictionary
        return fingerprint([d.W_enc, d.W_dec, d.b_dec])

    def unit_label(self, unit: int) -> str:
        return f"{getattr(self.dictionary, 'kind', 'dir')}{unit}"


class ProbeBasis(_Base):
    """Probe directions at `hook`: unit u is x @ directions[u] + bias[u]. directions:
    [n_units, d]; bias: [n_units] or None; labels: a name per unit. `ProbeBasis.from_sklearn`
    takes a fitted linear estimator (coef_ [n, d], intercept_)."""

    kind = "probe"
    signed = True

    def __init__(self, directions: Any, hook: str, *, bias: Any = None,
                 labels: list[str] | None = None):
        w = torch.as_tensor(directions, dtype=torch.float32)
        if w.ndim == 1:
            w = w[None]
        if w.ndim != 2:
            raise ValueError(f"directions must be [n_units, d]; got shape {list(w.shape)}.")
        self.directions, self.hook, self.n_units = w, str(hook), int(w.shape[0])
        self.bias = None if bias is None else torch.as_tensor(bias, dtype=torch.float32)
        if self.bias is not None and self.bias.reshape(-1).shape[0] != self.n_units:
            raise ValueError(f"bias must have one value per direction ({self.n_units}); got "
                             f"{self.bias.reshape(-1).shape[0]}.")
        if labels is not None and len(labels) != self.n_units:
            raise ValueError(f"labels must name each of the {self.n_units} directions.")
        self.labels = list(labels) if labels is not None else None

    @classmethod
    def from_sklearn(cls, estimator: Any, hook: str, labels: list[str] | None = None
                     ) -> ProbeBasis:
        return cls(estimator.coef_, hook, bias=getattr(estimator, "intercept_", None),
                   labels=labels)

    def encode(self, acts: torch.Tensor) -> torch.Tensor:
        if acts.shape[-1] != self.directions.shape[1]:
            raise ValueError(f"The probe directions have width {self.directions.shape[1]} but "
                             f"{self.hook} has width {acts.shape[-1]}.")
        out = acts.to(self.directions.device, torch.float32) @ self.directions.T
        return out + self.bias.reshape(-1) if self.bias is not None else out

    def output_directions(self) -> torch.Tensor | None:
        return self.directions

    def _fingerprint(self) -> str:
        return fingerprint([self.directions] + ([self.bias] if self.bias is not None else []))

    def unit_label(self, unit: int) -> str:
        return self.labels[unit] if self.labels else f"probe{unit}"


def neurons(model: Model, layer: int, hook: str = "mlp.hook_post") -> NeuronBasis:
    """The neurons of `layer`'s MLP as a basis (`NeuronBasis`)."""
    return NeuronBasis(model, layer, hook)


def as_basis(obj: Any, model: Model | None = None) -> Basis:
    """`obj` as a `Basis`: a basis as it is (a NeuronBasis bound to `model`), a
    `LinearDictionary` as a `DictionaryBasis`, an SAE (encode, d_sae, hook_name) as an
    `SAEBasis`. A `Transcoders` set needs a layer: `TranscoderBasis(tcs, layer)`."""
    from ..analysis.dictionaries import LinearDictionary

    if isinstance(obj, NeuronBasis):
        return obj.bind(model) if model is not None else obj
    if isinstance(obj, Basis):
        return obj
    if isinstance(obj, LinearDictionary):
        return DictionaryBasis(obj)
    if hasattr(obj, "d_transcoder") and hasattr(obj, "input_hook_name"):
        raise TypeError(f"A Transcoders set covers {obj.n_layers} layers: scan one layer with "
                        "iw.TranscoderBasis(transcoders, layer).")
    if all(hasattr(obj, a) for a in ("encode", "d_sae", "hook_name")):
        return SAEBasis(obj)
    raise TypeError(f"{type(obj).__name__} is not a basis: pass iw.neurons(model, layer), an SAE, "
                    "a LinearDictionary, iw.TranscoderBasis(tcs, layer) or iw.ProbeBasis(...).")
