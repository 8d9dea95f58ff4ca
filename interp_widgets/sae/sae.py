"""The `SAE` class: standard, TopK, JumpReLU and gated sparse autoencoders.

Encodings follow SAELens 6.x's inference classes exactly (`StandardSAE`, `TopKSAE`,
`JumpReLUSAE`, `GatedSAE`), so a file moves between the two libraries and encodes the same:

    sae_in     = normalize(x) - b_dec * apply_b_dec_to_input
    hidden_pre = sae_in @ W_enc + b_enc                              # [..., d_sae]
    standard:  acts = relu(hidden_pre)
    topk:      hidden_pre *= |W_dec| if rescale_acts_by_decoder_norm; keep the top k, then relu
    jumprelu:  acts = relu(hidden_pre) * (hidden_pre > threshold)
    gated:     acts = (sae_in @ W_enc + b_gate > 0) * relu(sae_in @ (W_enc * exp(r_mag)) + b_mag)
    decode:    unnormalize(acts @ W_dec + b_dec)   (topk with rescale: acts / |W_dec| first)

Written by hand because SAELens cannot be imported next to TransformerLens 4 (see DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import SAEShapeError

ARCHITECTURES = ("standard", "topk", "jumprelu", "gated")
NORMALIZATIONS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")

_Norm = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


class SAE(nn.Module):
    """A sparse autoencoder over one hook's activations.

    `SAE(d_in, d_sae, arch="topk", k=32, hook_name="blocks.1.hook_resid_pre")` makes a fresh one
    (decoder rows random unit vectors, encoder their transpose, biases zero); `iw.load_sae(path)`
    reads one in SAELens's format and `sae.save(path)` writes it. Parameters: `W_enc [d_in, d_sae]`,
    `W_dec [d_sae, d_in]`, `b_dec [d_in]`, and `b_enc [d_sae]` (all but gated), `threshold
    [d_sae]` (jumprelu), `b_gate`, `b_mag`, `r_mag [d_sae]` (gated)."""

    def __init__(self, d_in: int, d_sae: int, *, arch: str = "standard", k: int | None = None,
                 hook_name: str | None = None, model_name: str | None = None,
                 apply_b_dec_to_input: bool = True, normalize_activations: str = "none",
                 rescale_acts_by_decoder_norm: bool = False, reshape_activations: str = "none",
                 metadata: dict[str, Any] | None = None, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None, seed: int | None = None):
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"Unknown SAE architecture {arch!r}. "
                             f"Supported: {', '.join(ARCHITECTURES)}.")
        if arch == "topk" and (k is None or not 0 < int(k) <= d_sae):
            raise ValueError(f"A topk SAE needs k between 1 and d_sae = {d_sae}; got k={k!r}.")
        if normalize_activations not in NORMALIZATIONS:
            raise ValueError(f"Unknown normalize_activations {normalize_activations!r}. "
                             f"Supported: {', '.join(NORMALIZATIONS)}.")
        if reshape_activations not in ("none", "hook_z"):
            raise ValueError(f"reshape_activations must be 'none' or 'hook_z', "
                             f"got {reshape_activations!r}.")
        self.d_in, self.d_sae, self.arch = int(d_in), int(d_sae), arch
        self.k = int(k) if arch == "topk" else None
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.normalize_activations = normalize_activations
        self.rescale_acts_by_decoder_norm = bool(rescale_acts_by_decoder_norm)
        self.reshape_activations = reshape_activations
        self.metadata: dict[str, Any] = dict(metadata or {})
        if hook_name is not None:
            self.metadata["hook_name"] = hook_name
        if model_name is not None:
            self.metadata["model_name"] = model_name
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        w_dec = torch.randn(d_sae, d_in, generator=gen, dtype=torch.float32)
        w_dec /= w_dec.norm(dim=-1, keepdim=True)
        opts = {"dtype": dtype, "device": device}
        self.W_dec = nn.Parameter(w_dec.to(**opts))
        self.W_enc = nn.Parameter(w_dec.T.contiguous().to(**opts))
        self.b_dec = nn.Parameter(torch.zeros(d_in, **opts))
        if arch == "gated":
            self.b_gate = nn.Parameter(torch.zeros(d_sae, **opts))
            self.b_mag = nn.Parameter(torch.zeros(d_sae, **opts))
            self.r_mag = nn.Parameter(torch.zeros(d_sae, **opts))
        else:
            self.b_enc = nn.Parameter(torch.zeros(d_sae, **opts))
        if arch == "jumprelu":
            self.threshold = nn.Parameter(torch.zeros(d_sae, **opts))

    # ---- description --------------------------------------------------------------------------

    @property
    def hook_name(self) -> str | None:
        """The model hook this SAE reads and splices into (``metadata["hook_name"]``)."""
        return self.metadata.get("hook_name")

    @hook_name.setter
    def hook_name(self, name: str | None) -> None:
        self.metadata["hook_name"] = name

    @property
    def model_name(self) -> str | None:
        return self.metadata.get("model_name")

    @property
    def dtype(self) -> torch.dtype:
        return self.W_dec.dtype

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    def extra_repr(self) -> str:
        k = f", k={self.k}" if self.k is not None else ""
        return (f"arch={self.arch!r}, d_in={self.d_in}, d_sae={self.d_sae}{k}, "
                f"hook_name={self.hook_name!r}")

    def feature_directions(self) -> torch.Tensor:
        """Tensor[d_sae, d_in]: what one unit of each feature's activation adds to the
        (normalized) reconstruction: `W_dec`, or `W_dec / |W_dec|` with rescaled TopK."""
        w = self.W_dec
        return w / w.norm(dim=-1, keepdim=True) if self.rescale_acts_by_decoder_norm else w

    # ---- encode / decode ----------------------------------------------------------------------

    def _flatten_in(self, x: torch.Tensor) -> torch.Tensor:
        if self.reshape_activations == "hook_z" and x.shape[-1] != self.d_in and x.ndim >= 2:
            x = x.flatten(-2)
        if x.shape[-1] != self.d_in:
            raise SAEShapeError(self.hook_name, self.d_in, tuple(x.shape))
        return x

    def _normalizer(self, x: torch.Tensor) -> _Norm:
        """(into, out_of): the run-time normalization SAELens applies for this config."""
        mode = self.normalize_activations
        if mode == "constant_norm_rescale":
            coeff = (self.d_in ** 0.5) / x.norm(dim=-1, keepdim=True)
            return (lambda t: t * coeff), (lambda t: t / coeff)
        if mode == "layer_norm":
            mu = x.mean(dim=-1, keepdim=True)
            std = (x - mu).std(dim=-1, keepdim=True)
            return (lambda t: (t - mu) / (std + 1e-5)), (lambda t: t * std + mu)
        # "expected_average_only_in" is a training-time scale that SAELens folds into the
        # weights; at inference it is the identity, in SAELens as here.
        return (lambda t: t), (lambda t: t)

    def encode_pre(self, x: torch.Tensor) -> torch.Tensor:
        """Tensor[..., d_sae]: the pre-activations that the nonlinearity sees (for TopK with
        `rescale_acts_by_decoder_norm`, already scaled by the decoder norms). x: [..., d_in]."""
        x = self._flatten_in(x).to(self.device, self.dtype)
        sae_in = self._normalizer(x)[0](x) - self.b_dec * self.apply_b_dec_to_input
        if self.arch == "gated":
            return sae_in @ (self.W_enc * self.r_mag.exp()) + self.b_mag
        pre = sae_in @ self.W_enc + self.b_enc
        if self.arch == "topk" and self.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec.norm(dim=-1)
        return pre

    def activate(self, pre: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Tensor[..., d_sae]: the nonlinearity applied to `encode_pre`'s output (gated also
        needs the input x for its gate)."""
        if self.arch == "topk":
            vals, idx = pre.topk(self.k, dim=-1, sorted=False)
            return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())
        if self.arch == "jumprelu":
            return pre.relu() * (pre > self.threshold).to(pre.dtype)
        if self.arch == "gated":
            x = self._flatten_in(x).to(self.device, self.dtype)
            sae_in = self._normalizer(x)[0](x) - self.b_dec * self.apply_b_dec_to_input
            return (sae_in @ self.W_enc + self.b_gate > 0).to(pre.dtype) * pre.relu()
        return pre.relu()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Tensor[..., d_sae]: feature activations of x [..., d_in] (hook_z SAEs also take
        [..., n_heads, d_head]), on the SAE's device (x is moved there if need be)."""
        return self.activate(self.encode_pre(x), x)

    def decode(self, acts: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Tensor[..., d_in]: reconstruction from feature activations [..., d_sae].

        SAEs with run-time normalization (`constant_norm_rescale`, `layer_norm`) undo it with the
        statistics of the input, so they need the input `x` here."""
        if self.rescale_acts_by_decoder_norm:
            acts = acts / self.W_dec.norm(dim=-1)
        out = acts @ self.W_dec + self.b_dec
        if self.normalize_activations in ("constant_norm_rescale", "layer_norm"):
            if x is None:
                raise ValueError(f"This SAE normalizes its input ({self.normalize_activations!r}), "
                                 "so decode needs the input: sae.decode(acts, x).")
            out = self._normalizer(self._flatten_in(x).to(self.device, self.dtype))[1](out)
        return out

    def unflatten(self, out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """`out` [..., d_in] reshaped to `like`'s shape (hook_z: [..., n_heads, d_head])."""
        return out.reshape(like.shape) if out.shape != like.shape else out

    def forward(self, x: torch.Tensor, *, use_error_term: bool = False) -> torch.Tensor:
        """The reconstruction of x, shaped like x; with `use_error_term`, plus the error term
        `x - reconstruction` (so the output equals x exactly)."""
        out = self.unflatten(self.decode(self.encode(x), x), x).to(x.device, x.dtype)
        return x if use_error_term else out

    def error(self, x: torch.Tensor) -> torch.Tensor:
        """The error term `x - sae(x)`, shaped like x: what the dictionary leaves out."""
        return x - self.forward(x)

    # ---- files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write `cfg.json` and `sae_weights.safetensors` (SAELens 6.x format) into folder `path`,
        each file atomically; returns the folder."""
        from .io import save_sae

        return save_sae(self, path)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> SAE:
        """Read an SAELens-format folder (see `load_sae`)."""
        from .io import load_sae

        return load_sae(path, **kwargs)
