"""`Transcoders`: per-layer transcoders and cross-layer transcoders (CLTs), in circuit-tracer's
file layout.

A transcoder reads an MLP's input and predicts that MLP's output through sparse features:

    pre_l   = x_l @ W_enc[l] + b_enc[l]                      # x_l: [..., d_in], pre: [..., d_tc]
    a_l     = act(pre_l)                                      # relu | jumprelu | topk
    y_hat_l = sum_{s in sources(l)} a_s @ W_dec[s][:, l - s] + b_dec[l] (+ x_l @ W_skip[l].T)

Per-layer: sources(l) = {l} (W_dec[l] is [d_tc, 1, d_out]). Cross-layer: every layer s <= l
(W_dec[s] is [d_tc, n_layers - s, d_out]): each layer's features write to every later MLP.

Files (circuit-tracer 0.5's layout, so its `load_transcoder_set` / `load_clt` read them):
  per-layer: `layer_{l}.safetensors` with W_enc [d_tc, d_in], W_dec [d_tc, d_out], b_enc,
      b_dec, optional `activation_function.threshold` [d_tc] and W_skip [d_out, d_in];
  cross-layer: `W_enc_{l}.safetensors` (W_enc_{l} [d_tc, d_in], b_enc_{l}, b_dec_{l},
      optional threshold_{l}) and `W_dec_{l}.safetensors` (W_dec_{l} [d_tc, n_layers - l, d_out]);
  both: `config.yaml` with model_kind ("transcoder_set" | "cross_layer_transcoder"),
      feature_input_hook / feature_output_hook (relative to `blocks.{l}.`), model_name, and our
      own `interp_widgets` block (activation, k, skip) that circuit-tracer ignores.
circuit-tracer has no TopK activation: it reads a TopK set's weights but applies ReLU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import SAEFormatError, SAEShapeError

ACTIVATIONS = ("relu", "jumprelu", "topk")
KINDS = ("per_layer", "clt")
CONFIG_FILE = "config.yaml"
FORMAT_VERSION = 1
_MODEL_KIND = {"per_layer": "transcoder_set", "clt": "cross_layer_transcoder"}


class Transcoders(nn.Module):
    """Transcoders for layers 0 .. n_layers - 1 of one model (see the module docstring).

    Parameters: W_enc [L, d_in, d_tc], b_enc [L, d_tc], b_dec [L, d_out], W_dec (a list: W_dec[s]
    is [d_tc, n_out(s), d_out], n_out = 1 per-layer or L - s cross-layer), threshold [L, d_tc]
    (jumprelu), W_skip [L, d_out, d_in] (with skip=True)."""

    def __init__(self, n_layers: int, d_in: int, d_out: int, d_transcoder: int, *,
                 kind: str = "per_layer", activation: str = "topk", k: int | None = None,
                 skip: bool = False, input_hook: str = "ln2.hook_normalized",
                 output_hook: str = "hook_mlp_out", model_name: str | None = None,
                 dtype: torch.dtype = torch.float32, device: str | torch.device | None = None,
                 seed: int | None = None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"Unknown transcoder kind {kind!r}; use one of {', '.join(KINDS)}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {activation!r}; use one of "
                             f"{', '.join(ACTIVATIONS)}.")
        if activation == "topk" and (k is None or not 0 < int(k) <= d_transcoder):
            raise ValueError(f"TopK transcoders need k between 1 and d_transcoder = "
                             f"{d_transcoder}; got k={k!r}.")
        self.n_layers, self.d_in, self.d_out = int(n_layers), int(d_in), int(d_out)
        self.d_transcoder, self.kind, self.activation = int(d_transcoder), kind, activation
        self.k = int(k) if activation == "topk" else None
        self.input_hook, self.output_hook, self.model_name = input_hook, output_hook, model_name
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        opts = {"dtype": dtype, "device": device}
        L, dt = self.n_layers, self.d_transcoder
        dec = []
        for s in range(L):
            w = torch.randn(dt, self.n_out(s), d_out, generator=gen)
            dec.append(nn.Parameter((w / w.flatten(1).norm(dim=-1)[:, None, None]).to(**opts)))
        self.W_dec = nn.ParameterList(dec)
        if d_in == d_out:  # the encoder starts as the (first) decoder's transpose
            enc = torch.stack([d[:, 0].T for d in dec]).float()
        else:
            enc = torch.randn(L, d_in, dt, generator=gen) / math.sqrt(d_in)
        self.W_enc = nn.Parameter(enc.to(**opts).contiguous())
        self.b_enc = nn.Parameter(torch.zeros(L, dt, **opts))
        self.b_dec = nn.Parameter(torch.zeros(L, d_out, **opts))
        self.threshold = nn.Parameter(torch.zeros(L, dt, **opts)) if activation == "jumprelu" \
            else None
        self.W_skip = nn.Parameter(torch.zeros(L, d_out, d_in, **opts)) if skip else None

    # ---- description --------------------------------------------------------------------------

    @property
    def skip(self) -> bool:
        return self.W_skip is not None

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    def n_out(self, source: int) -> int:
        """How many MLP outputs layer `source`'s features write to (1, or n_layers - source)."""
        return 1 if self.kind == "per_layer" else self.n_layers - source

    def input_hook_name(self, layer: int) -> str:
        return f"blocks.{layer}.{self.input_hook}"

    def output_hook_name(self, layer: int) -> str:
        return f"blocks.{layer}.{self.output_hook}"

    def extra_repr(self) -> str:
        k = f", k={self.k}" if self.k else ""
        return (f"kind={self.kind!r}, activation={self.activation!r}{k}, n_layers={self.n_layers},"
                f" d_in={self.d_in}, d_transcoder={self.d_transcoder}, d_out={self.d_out}, "
                f"skip={self.skip}, hooks={self.input_hook!r} -> {self.output_hook!r}")

    # ---- encode / decode ----------------------------------------------------------------------

    def _check_in(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"Layer {layer} out of range: these transcoders cover layers "
                             f"0 .. {self.n_layers - 1}.")
        if x.shape[-1] != self.d_in:
            raise SAEShapeError(self.input_hook_name(layer), self.d_in, tuple(x.shape))
        return x.to(self.device, self.dtype)

    def encode_pre(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Tensor[..., d_tc]: layer `layer`'s pre-activations for its MLP input x [..., d_in]."""
        return self._check_in(layer, x) @ self.W_enc[layer] + self.b_enc[layer]

    def activate(self, layer: int, pre: torch.Tensor) -> torch.Tensor:
        """Tensor[..., d_tc]: the activation function applied to pre-activations."""
        if self.activation == "topk":
            vals, idx = pre.topk(self.k, dim=-1, sorted=False)
            return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())
        if self.activation == "jumprelu":
            return pre * (pre > self.threshold[layer]).to(pre.dtype)
        return pre.relu()

    def encode(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Tensor[..., d_tc]: feature activations of layer `layer` for its MLP input x."""
        return self.activate(layer, self.encode_pre(layer, x))

    def decoder(self, source: int, target: int) -> torch.Tensor:
        """Tensor[d_tc, d_out]: what one unit of each layer-`source` feature adds to MLP output
        `target` (zeros where source's features do not reach target)."""
        if self.kind == "per_layer":
            return self.W_dec[source][:, 0] if source == target else \
                torch.zeros_like(self.W_dec[source][:, 0])
        if target < source:
            return torch.zeros_like(self.W_dec[source][:, 0])
        return self.W_dec[source][:, target - source]

    def sources(self, target: int) -> range:
        """The layers whose features write to MLP output `target`."""
        return range(target, target + 1) if self.kind == "per_layer" else range(target + 1)

    def decode(self, target: int, acts: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Tensor[..., d_out]: reconstruction of MLP output `target` (without the skip term)
        from `acts[s]` [..., d_tc] of each source layer s (entries for other layers ignored)."""
        out = None
        for s in self.sources(target):
            if acts[s] is None:
                raise ValueError(f"Decoding MLP output {target} needs layer {s}'s features.")
            term = acts[s] @ self.decoder(s, target)
            out = term if out is None else out + term
        return out + self.b_dec[target]

    def skip_term(self, layer: int, x: torch.Tensor) -> torch.Tensor | float:
        """x [..., d_in] @ W_skip[layer].T, or 0.0 without a skip connection."""
        if self.W_skip is None:
            return 0.0
        return self._check_in(layer, x) @ self.W_skip[layer].T

    def reconstruct(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """[Tensor[..., d_out] per layer]: every MLP output predicted from every MLP input
        (inputs[l]: [..., d_in], each layer's own true input)."""
        acts = [self.encode(layer, x) for layer, x in enumerate(inputs)]
        return [self.decode(layer, acts) + self.skip_term(layer, inputs[layer])
                for layer in range(self.n_layers)]

    # ---- checks -------------------------------------------------------------------------------

    def check_model(self, model: Any) -> None:
        """Check these transcoders fit `model`: layer count, hook names and widths; the error
        names the hook and both shapes."""
        from .splice import hook_widths

        n = model.cfg.n_layers
        if self.n_layers != n:
            raise ValueError(
                f"These transcoders cover {self.n_layers} layers but the model has {n}: a "
                f"replacement model needs one transcoder per MLP (layers 0 .. {n - 1}).")
        hooks = [h for layer in range(n) for h in (self.input_hook_name(layer),
                                                   self.output_hook_name(layer))]
        model.check_hook_names(hooks)
        widths = hook_widths(model, hooks)
        for layer in range(n):
            for hook, want in ((self.input_hook_name(layer), self.d_in),
                               (self.output_hook_name(layer), self.d_out)):
                if widths[hook][-1] != want:
                    raise ValueError(
                        f"Transcoder width mismatch at hook {hook!r}: the transcoders expect "
                        f"width {want} (W_enc [{self.d_in}, {self.d_transcoder}], W_dec "
                        f"[{self.d_transcoder}, {self.d_out}]) but the activation there has "
                        f"shape {list(widths[hook])}. Use transcoders trained on this model.")

    # ---- files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the set into folder `path` in circuit-tracer's layout (each file atomically)."""
        return save_transcoders(self, path)


# ---- I/O ----------------------------------------------------------------------------------------


def _config(tcs: Transcoders) -> dict[str, Any]:
    return {"model_kind": _MODEL_KIND[tcs.kind], "model_name": tcs.model_name,
            "feature_input_hook": tcs.input_hook, "feature_output_hook": tcs.output_hook,
            "scan": f"{tcs.model_name or 'model'}/interp_widgets-{tcs.kind}-{tcs.d_transcoder}",
            "interp_widgets": {"format_version": FORMAT_VERSION, "activation": tcs.activation,
                               "k": tcs.k, "skip": tcs.skip, "n_layers": tcs.n_layers,
                               "d_transcoder": tcs.d_transcoder}}


def save_transcoders(tcs: Transcoders, path: str | Path) -> Path:
    """Write `tcs` into folder `path` (see the module docstring for the files)."""
    import yaml
    from safetensors.torch import save_file

    from .io import _atomic_write

    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)

    def put(name: str, tensors: dict[str, torch.Tensor]) -> None:
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        _atomic_write(folder / name, lambda tmp: save_file(tensors, tmp))

    for layer in range(tcs.n_layers):
        enc = {"W_enc": tcs.W_enc[layer].T, "b_enc": tcs.b_enc[layer], "b_dec": tcs.b_dec[layer]}
        if tcs.kind == "per_layer":
            enc["W_dec"] = tcs.W_dec[layer][:, 0]
            if tcs.threshold is not None:
                enc["activation_function.threshold"] = tcs.threshold[layer]
            if tcs.W_skip is not None:
                enc["W_skip"] = tcs.W_skip[layer]
            put(f"layer_{layer}.safetensors", enc)
        else:
            enc = {f"{k}_{layer}": v for k, v in enc.items()}
            if tcs.threshold is not None:
                enc[f"threshold_{layer}"] = tcs.threshold[layer]
            if tcs.W_skip is not None:  # our extension; circuit-tracer's CLT loader skips it
                enc[f"W_skip_{layer}"] = tcs.W_skip[layer]
            put(f"W_enc_{layer}.safetensors", enc)
            put(f"W_dec_{layer}.safetensors", {f"W_dec_{layer}": tcs.W_dec[layer]})
    text = yaml.safe_dump(_config(tcs), sort_keys=False)
    _atomic_write(folder / CONFIG_FILE, lambda tmp: Path(tmp).write_text(text))
    return folder


def load_transcoders(path: str | Path, *, device: str | torch.device | None = "cpu",
                     dtype: torch.dtype | None = None, input_hook: str | None = None,
                     output_hook: str | None = None, model: Any = None) -> Transcoders:
    """Read transcoders from a folder in circuit-tracer's layout (`layer_{l}.safetensors`, or
    `W_enc_{l}` / `W_dec_{l}.safetensors` for a CLT, with or without `config.yaml`).

    Hooks come from config.yaml (feature_input_hook / feature_output_hook), else from the
    arguments, else circuit-tracer's defaults (hook_resid_mid -> hook_mlp_out). Without our
    config block the activation is JumpReLU where a threshold is stored, else ReLU (as
    circuit-tracer reads it). With `model`, also check the set fits it (`check_model`)."""
    import yaml
    from safetensors.torch import load_file

    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"No transcoders at {str(folder)!r}: the path {what}. A "
                                "transcoder set is a folder of layer_{l}.safetensors (or "
                                "W_enc_{l}/W_dec_{l}.safetensors for a CLT) and config.yaml.")
    cfg: dict[str, Any] = {}
    if (folder / CONFIG_FILE).is_file():
        try:
            cfg = yaml.safe_load((folder / CONFIG_FILE).read_text()) or {}
        except yaml.YAMLError as err:
            raise SAEFormatError(f"{folder / CONFIG_FILE} is not valid YAML ({err}).") from None
    per = sorted(folder.glob("layer_*.safetensors"))
    clt = sorted(folder.glob("W_enc_*.safetensors"))
    kind_cfg = cfg.get("model_kind")
    if kind_cfg not in (None, *_MODEL_KIND.values()):
        raise SAEFormatError(f"{folder / CONFIG_FILE}: unknown model_kind {kind_cfg!r}; "
                             f"expected one of {', '.join(_MODEL_KIND.values())}.")
    kind = "clt" if kind_cfg == "cross_layer_transcoder" or (kind_cfg is None and clt and not per) \
        else "per_layer"
    files = clt if kind == "clt" else per
    if not files:
        have = sorted(p.name for p in folder.iterdir())[:10]
        raise FileNotFoundError(f"{str(folder)!r} holds no transcoder weights (layer_*.safetensors"
                                f" or W_enc_*.safetensors); it holds: {', '.join(have) or '-'}.")
    n_layers = len(files)
    mine = cfg.get("interp_widgets") or {}
    if mine.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise SAEFormatError(f"{folder / CONFIG_FILE} has format_version "
                             f"{mine['format_version']}, newer than this interp_widgets reads "
                             f"({FORMAT_VERSION}); upgrade interp_widgets.")
    layers: list[dict[str, torch.Tensor]] = []
    for layer in range(n_layers):
        name = f"W_enc_{layer}.safetensors" if kind == "clt" else f"layer_{layer}.safetensors"
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is missing {name}: transcoders must cover layers "
                                    f"0 .. {n_layers - 1} without gaps.")
        w = load_file(str(folder / name))
        if kind == "clt":
            w = {k.rsplit("_", 1)[0]: v for k, v in w.items()}
            dec = folder / f"W_dec_{layer}.safetensors"
            if not dec.is_file():
                raise FileNotFoundError(f"{folder} is missing W_dec_{layer}.safetensors.")
            w["W_dec"] = load_file(str(dec))[f"W_dec_{layer}"]
        else:
            if "activation_function.threshold" in w:
                w["threshold"] = w.pop("activation_function.threshold")
            if "W_dec" in w:
                w["W_dec"] = w["W_dec"][:, None]
        need = [k for k in ("W_enc", "W_dec", "b_enc", "b_dec") if k not in w]
        if need:
            raise SAEFormatError(f"{folder / name} lacks {', '.join(need)} (it holds "
                                 f"{', '.join(sorted(w))}).")
        layers.append(w)
    d_tc, d_in = layers[0]["W_enc"].shape
    d_out = layers[0]["b_dec"].shape[-1]
    activation = mine.get("activation") or ("jumprelu" if "threshold" in layers[0] else "relu")
    dt = dtype or layers[0]["W_enc"].dtype
    tcs = Transcoders(n_layers, d_in, d_out, d_tc, kind=kind, activation=activation,
                      k=mine.get("k"), skip="W_skip" in layers[0],
                      input_hook=cfg.get("feature_input_hook") or input_hook or "hook_resid_mid",
                      output_hook=cfg.get("feature_output_hook") or output_hook or "hook_mlp_out",
                      model_name=cfg.get("model_name"), dtype=dt, device="meta")
    state = {"W_enc": torch.stack([w["W_enc"].T for w in layers]),
             "b_enc": torch.stack([w["b_enc"] for w in layers]),
             "b_dec": torch.stack([w["b_dec"] for w in layers])}
    for layer, w in enumerate(layers):
        state[f"W_dec.{layer}"] = w["W_dec"]
    if tcs.threshold is not None:
        state["threshold"] = torch.stack([w["threshold"].reshape(-1) for w in layers])
    if tcs.W_skip is not None:
        state["W_skip"] = torch.stack([w["W_skip"] for w in layers])
    expected = {n: tuple(p.shape) for n, p in tcs.named_parameters()}
    for name, shape in expected.items():
        got = tuple(state[name].shape) if name in state else None
        if got != shape:
            raise SAEFormatError(f"{folder}: {name} has shape {list(got or [])} but a set of "
                                 f"{n_layers} layers with d_in={d_in}, d_transcoder={d_tc}, "
                                 f"d_out={d_out} needs {list(shape)}.")
    tcs.load_state_dict({n: state[n] for n in expected}, assign=True)
    tcs = tcs.to(device=device, dtype=dt)
    if model is not None:
        tcs.check_model(model)
    return tcs
