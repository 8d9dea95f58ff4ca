"""The model layer: `Model` wraps a TransformerLens 4 `TransformerBridge`; a `Run` is one pass.

Every widget and analysis function takes a `Model`. It adds to the bridge what a notebook user needs
and TransformerLens leaves to them: batching of ragged prompts (right padding + attention mask, so
a batch equals running each prompt alone), per-token loss, a cache holding only the hooks asked
for, and errors that say what would be right.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._errors import SilentHookError, UnknownHookError

Inputs = str | Sequence[str] | torch.Tensor | Sequence[int] | Sequence[Sequence[int]]

_DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "half": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
}


def available_devices() -> list[str]:
    """The devices torch can use here, best first (e.g. ``["cuda", "cpu"]``)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device`, or the best available one (CUDA, then MPS, then CPU); a clear error otherwise."""
    if device is None:
        return torch.device(available_devices()[0])
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"Unknown device {device!r}. Available devices here: {', '.join(available_devices())}."
        ) from err
    if dev.type not in available_devices():
        raise ValueError(
            f"Device {str(dev)!r} is not available on this machine. "
            f"Available devices here: {', '.join(available_devices())}."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"Device {str(dev)!r} does not exist: this machine has {torch.cuda.device_count()} "
            f"CUDA device(s), cuda:0 ... cuda:{torch.cuda.device_count() - 1}."
        )
    return dev


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """A torch floating dtype from a name or dtype (default float32); a clear error otherwise."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype {dtype} is not a floating-point type. Use one of: "
                             f"{', '.join(sorted(set(_DTYPES)))}.")
        return dtype
    key = str(dtype).removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}. Use one of: {', '.join(sorted(_DTYPES))}.")
    return _DTYPES[key]


def hook_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """The canonical hook name for a short one: ``hook_name("resid_pre", 3)`` ->
    ``"blocks.3.hook_resid_pre"``, ``hook_name("pattern", 1)`` -> ``"blocks.1.attn.hook_pattern"``,
    ``hook_name("post", 0)`` -> ``"blocks.0.mlp.hook_post"``. Uses TransformerLens's `get_act_name`.
    """
    from transformer_lens.utilities import get_act_name

    return get_act_name(name, layer, layer_type)


@dataclass
class Run:
    """One forward pass over a batch of prompts.

    Tensors keep TransformerLens's batch-first layout even for one prompt. Rows are right-padded;
    `attention_mask` marks real tokens. Attributes:
        tokens: LongTensor[batch, pos]
        attention_mask: LongTensor[batch, pos] (1 for real tokens, 0 for padding)
        logits: Tensor[batch, pos, vocab]
        loss: Tensor[batch, pos]: loss of predicting token i from tokens[:i]; NaN at position 0
            and at padding, so `loss[b]` lines up with `str_tokens[b]`. Computed when first read.
        cache: {hook name: Tensor[batch, pos, ...]}, only the hooks asked for.
    """

    model: Model
    tokens: torch.Tensor
    attention_mask: torch.Tensor
    logits: torch.Tensor
    cache: dict[str, torch.Tensor] = field(default_factory=dict)
    single: bool = True
    _loss: torch.Tensor | None = field(default=None, repr=False)

    @property
    def loss(self) -> torch.Tensor:
        """Tensor[batch, pos] per-token loss, computed on first use (see the class docstring)."""
        if self._loss is None:
            self._loss = per_token_loss(self.logits, self.tokens, self.attention_mask)
        return self._loss

    @property
    def lengths(self) -> list[int]:
        """Number of real (unpadded) tokens in each row."""
        return self.attention_mask.sum(dim=1).tolist()

    @property
    def str_tokens(self) -> list[str] | list[list[str]]:
        """Token strings without padding: a list for one prompt, a list of lists for several."""
        rows = [
            self.model.to_str_tokens(self.tokens[b, :n]) for b, n in enumerate(self.lengths)
        ]
        return rows[0] if self.single else rows

    def top_predictions(self, pos: int = -1, k: int = 5, batch: int = 0) -> list[tuple[str, float]]:
        """The k most likely next tokens after position `pos` of row `batch`, as
        ``[(token_str, prob), ...]``. Negative `pos` counts from the row's last real token."""
        n = self.lengths[batch]
        if not -n <= pos < n:
            raise IndexError(f"pos {pos} is out of range for a row of {n} tokens "
                             f"(use -{n} .. {n - 1}).")
        probs = self.logits[batch, pos % n].float().softmax(-1)
        top = probs.topk(k)
        strs = self.model.to_str_tokens(top.indices)
        return [(s, float(p)) for s, p in zip(strs, top.values.tolist())]


class Model:
    """A language model for interpretability work: a thin layer over `TransformerBridge`.

    `Model(bridge)` wraps a bridge you built; `load_model(...)` builds one for you.
    """

    def __init__(self, bridge: Any, *, name: str | None = None,
                 logit_offset: LogitOffset | None = None):
        self.bridge = bridge
        self.name = name or getattr(bridge.cfg, "model_name", None) or "model"
        self._hook_names: list[str] | None = None
        #: what TransformerLens's centring took out of the logits (`logit_shift`); None when
        #: unknown (a bridge processed before it was wrapped)
        self.logit_offset = logit_offset
        #: Tensor[layer, head, d_head]: each head's value bias before TransformerLens folded it
        #: into b_O (see `load_model`); None when unknown
        self.head_value_bias: torch.Tensor | None = None
        self._fired: dict[tuple, frozenset[str]] = {}

    @property
    def final_resid_hook(self) -> str:
        """The hook whose value the final norm reads: ``blocks.{n_layers - 1}.hook_resid_post``."""
        return f"blocks.{self.cfg.n_layers - 1}.hook_resid_post"

    def logit_shift(self, resid_final: torch.Tensor) -> torch.Tensor | None:
        """Tensor[...] to add to the bridge's logits at each position to get the model's own
        (the Hugging Face model's) logits, from the final residual stream `resid_final`
        [..., d_model] (`final_resid_hook`). The bridge's logits are TransformerLens's centred
        ones (`enable_compatibility_mode` subtracts the mean over the vocabulary of the
        unembedding), which differ from the model's by this per-position constant; logit
        differences, softmax and rankings are the same. None when the offset is unknown."""
        if self.logit_offset is None:
            return None
        return self.logit_offset(resid_final)

    def __repr__(self) -> str:
        c = self.cfg
        return (f"Model({self.name!r}: {c.n_layers} layers, {c.n_heads} heads, d_model {c.d_model},"
                f" vocab {c.d_vocab}, context {c.n_ctx}, on {self.device})")

    @property
    def cfg(self) -> Any:
        """The bridge's config: `n_layers`, `n_heads`, `d_model`, `d_mlp`, `n_ctx`, `d_vocab`..."""
        return self.bridge.cfg

    @property
    def tokenizer(self) -> Any:
        return self.bridge.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.bridge.parameters()).device

    # ---- tokens -------------------------------------------------------------------------------

    @property
    def bos(self) -> int | None:
        """The token id put before every prompt by default, or None for a model trained without
        one. The one place that decides it: TransformerLens's `cfg.default_prepend_bos` (False
        for Qwen2, GPT-NeoX/Pythia, Phi, ...; True otherwise) and the tokenizer's BOS token.
        Every function that tokenizes text takes its default from here and accepts
        ``prepend_bos=`` to do otherwise."""
        if not bool(getattr(self.cfg, "default_prepend_bos", True)):
            return None
        return self.tokenizer.bos_token_id

    def bos_for(self, prepend_bos: bool | None = None) -> int | None:
        """The id to put first under `prepend_bos`: None -> the model's default (`bos`);
        False -> nothing; True -> the tokenizer's BOS (an error when it has none)."""
        if prepend_bos is None:
            return self.bos
        if not prepend_bos:
            return None
        if self.tokenizer.bos_token_id is None:
            raise ValueError("This tokenizer has no BOS token; pass prepend_bos=False (or None, "
                             "the model's default).")
        return self.tokenizer.bos_token_id

    def bos_mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """BoolTensor[batch, pos] (or [pos]), True at position 0 of each row that begins with the
        tokenizer's BOS token: the attention sink that analyses leave alone (never zeroed, not
        counted as text). All False on rows without one (Qwen2-style models)."""
        mask = torch.zeros(tokens.shape, dtype=torch.bool, device=tokens.device)
        bos = self.tokenizer.bos_token_id
        if bos is not None and tokens.numel() > 0:
            mask[..., 0] = tokens[..., 0] == bos
        return mask

    def starts_with_bos(self, tokens: torch.Tensor | Sequence[int]) -> bool:
        """Whether a row of token ids [pos] (or the first row of [batch, pos]) begins with the
        tokenizer's BOS token (see `bos_mask`)."""
        ids = torch.as_tensor(tokens).reshape(-1)
        return bool(self.bos_mask(ids[:1]).any()) if ids.numel() else False

    def to_tokens(self, inputs: Inputs, *, prepend_bos: bool | None = None) -> torch.Tensor:
        """LongTensor[batch, pos]: tokenized, truncated to the context, right-padded.
        prepend_bos: None (the model's default, `Model.bos`), True or False."""
        return self._tokenize(inputs, prepend_bos=prepend_bos)[0]

    def to_str_tokens(self, inputs: str | torch.Tensor | Sequence[int], *,
                      prepend_bos: bool | None = None) -> list[str]:
        """Token strings of one prompt (a string) or of one row of token ids."""
        if isinstance(inputs, str):
            ids = self._encode(inputs, prepend_bos=prepend_bos, index=None)
        else:
            ids = torch.as_tensor(inputs).reshape(-1).tolist()
        return [self.tokenizer.decode([i]) for i in ids]

    def _encode(self, text: str, *, prepend_bos: bool | None, index: int | None) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"Expected a string prompt, got {type(text).__name__}.")
        where = "" if index is None else f" (item {index} of the list)"
        if not text:
            raise ValueError(f"The prompt is empty{where}: give at least one character of text.")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.bos_for(prepend_bos)
        return ids if bos is None else [bos] + ids

    def _tokenize(self, inputs: Inputs, *,
                  prepend_bos: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(tokens LongTensor[batch, pos], attention_mask LongTensor[batch, pos], single).
        Text gets the BOS of `bos_for(prepend_bos)`; token ids are used as given."""
        if isinstance(inputs, str):
            rows, single = [self._encode(inputs, prepend_bos=prepend_bos, index=None)], True
        elif isinstance(inputs, torch.Tensor):
            if inputs.dtype.is_floating_point:
                raise TypeError("Token ids must be integers, got a floating-point tensor.")
            if inputs.ndim not in (1, 2):
                raise ValueError(f"Token ids must be [pos] or [batch, pos]; got shape "
                                 f"{tuple(inputs.shape)}.")
            single = inputs.ndim == 1
            rows = [r.tolist() for r in inputs.reshape(-1, inputs.shape[-1])]
        elif isinstance(inputs, Sequence) and len(inputs) == 0:
            raise ValueError("The input list is empty: give a string, a list of strings, or ids.")
        elif isinstance(inputs, Sequence) and all(isinstance(x, str) for x in inputs):
            rows = [self._encode(t, prepend_bos=prepend_bos, index=i) for i, t in enumerate(inputs)]
            single = False
        elif isinstance(inputs, Sequence) and all(isinstance(x, int) for x in inputs):
            rows, single = [list(inputs)], True
        elif isinstance(inputs, Sequence) and all(isinstance(x, Sequence) for x in inputs):
            rows, single = [list(r) for r in inputs], False
        else:
            raise TypeError("Inputs must be a string, a list of strings, a tensor of token ids, "
                            f"or lists of token ids; got {type(inputs).__name__}.")
        for i, r in enumerate(rows):
            if len(r) == 0:
                raise ValueError(f"Row {i} of the token ids is empty: each row needs >= 1 token.")
        n_ctx = self.cfg.n_ctx
        for i, r in enumerate(rows):
            if len(r) > n_ctx:
                which = "The input" if single else f"Input {i}"
                warnings.warn(f"{which} has {len(r):,} tokens but the model's context is "
                              f"{n_ctx:,}: the last {len(r) - n_ctx:,} tokens were cut.",
                              stacklevel=4)
                rows[i] = r[:n_ctx]
        width = max(len(r) for r in rows)
        pad_id = self.tokenizer.pad_token_id
        pad_id = 0 if pad_id is None else pad_id
        tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        vocab = self.cfg.d_vocab
        if tokens.min() < 0 or tokens.max() >= vocab:
            raise ValueError(f"Token ids must lie in [0, {vocab - 1}] (the vocabulary); got "
                             f"values from {int(tokens.min())} to {int(tokens.max())}.")
        return tokens.to(self.device), mask.to(self.device), single

    # ---- hooks --------------------------------------------------------------------------------

    def hook_names(self) -> list[str]:
        """Every valid hook name of this model (canonical names and their aliases)."""
        if self._hook_names is None:
            names = dict.fromkeys(self.bridge.hook_dict)
            for alias in getattr(self.bridge, "hook_aliases", {}) or {}:
                names.setdefault(alias)
            self._hook_names = list(names)
        return list(self._hook_names)

    def check_hook_names(self, names: str | Sequence[str]) -> list[str]:
        """`names` as a list, after checking each is a hook of this model."""
        names = [names] if isinstance(names, str) else list(names)
        valid = set(self.hook_names())
        for n in names:
            if n not in valid:
                raise UnknownHookError(n, difflib.get_close_matches(n, self.hook_names(), n=5,
                                                                    cutoff=0.5),
                                       len(valid))
        return names

    def fired_hooks(self) -> frozenset[str]:
        """The hook names that fire in a forward pass of this model (asked of the bridge with one
        short run, then remembered for the bridge's current hook flags). `hook_names()` lists
        more: e.g. ``hook_pos_embed`` exists on rotary models but never fires."""
        flags = tuple(bool(getattr(self.cfg, f, False)) for f in
                      ("use_attn_result", "use_split_qkv_input", "use_attn_in",
                       "use_hook_mlp_in"))
        if flags not in self._fired:
            ids = [self.bos if self.bos is not None else 0, 0]
            tokens = torch.tensor([ids], device=self.device)
            with torch.no_grad():
                _, cache = self.bridge.run_with_cache(tokens)
            fired = set(cache.keys())
            aliases = getattr(self.bridge, "hook_aliases", {}) or {}
            for alias, target in aliases.items():
                targets = [target] if isinstance(target, str) else list(target)
                if any(t in fired for t in targets):
                    fired.add(alias)
            self._fired[flags] = frozenset(fired)
        return self._fired[flags]

    def check_hooks_fire(self, names: str | Sequence[str]) -> list[str]:
        """`names` (valid hook names) as a list, after checking each fires in a forward pass
        (`fired_hooks`); a `SilentHookError` naming the ones that do not, and what fires nearby."""
        names = self.check_hook_names(names)
        fired = self.fired_hooks()
        silent = [n for n in names if n not in fired]
        if silent:
            near = {n: difflib.get_close_matches(n, sorted(fired), n=4, cutoff=0.5)
                    for n in silent}
            raise SilentHookError(silent, near)
        return names

    # ---- running ------------------------------------------------------------------------------

    def forward_with_cache(self, tokens: torch.Tensor, past: Any = None
                           ) -> tuple[torch.Tensor, Any]:
        """The bridge's logits [batch, pos, vocab] for `tokens` [batch, pos] after the positions
        held in `past`, and the KV cache that then holds them all: None when the bridge did not
        fill it (see `cache_holds`), so that a caller recomputes instead of losing the prefix."""
        n_pos = tokens.shape[1] + (0 if past is None else int(past.get_seq_length()))
        logits, cache = self.bridge(tokens, return_type="logits_and_cache", past_key_values=past)
        return logits, cache if cache_holds(cache, n_pos) else None

    def run(self, inputs: Inputs, *, names: str | Sequence[str] | None = None,
            prepend_bos: bool | None = None, saes: Sequence[Any] | None = None,
            use_error_term: bool = False, edits: Sequence[Any] = ()) -> Run:
        """Run the model and return a `Run` with tokens, logits, per-token loss and a cache of
        exactly the hooks in `names` (none by default).

        `inputs` is a string, a list of strings (batched with right padding and an attention
        mask, so each row equals running that prompt alone), or token ids (used as given).
        Text starts with the model's BOS (`Model.bos`) unless `prepend_bos` says otherwise.
        `saes`: SAEs spliced in for this run, with the error term added back if
        `use_error_term` and feature `edits` (`sae.ablate` / `clamp` / `steer`) applied; see
        `interp_widgets.sae.run_with_saes`."""
        if saes:
            from .sae.splice import run_with_saes

            return run_with_saes(self, inputs, saes, names=names, prepend_bos=prepend_bos,
                                 use_error_term=use_error_term, edits=edits)
        if use_error_term or edits:
            raise ValueError("use_error_term and edits apply to spliced SAEs: pass saes=[sae] "
                             "as well (e.g. model.run(prompt, saes=[sae], edits=[clamp(sae, "
                             "f, 5.0)])).")
        hooks = self.check_hooks_fire(names) if names is not None else []
        tokens, mask, single = self._tokenize(inputs, prepend_bos=prepend_bos)
        padded = bool((mask == 0).any())
        kwargs = {"attention_mask": mask} if padded else {}
        with torch.no_grad():
            if hooks:
                logits, cache = self.bridge.run_with_cache(tokens, names_filter=hooks, **kwargs)
                cache = {n: cache[n] for n in hooks}
            else:
                logits, cache = self.bridge(tokens, **kwargs), {}
        return Run(self, tokens, mask, logits, cache, single)


def per_token_loss(logits: torch.Tensor, tokens: torch.Tensor,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Tensor[batch, pos]: -log p(tokens[:, i] | tokens[:, :i]); NaN at position 0 and padding.

    logits: [batch, pos, vocab]; tokens, mask: [batch, pos]."""
    logp = logits[:, :-1].float().log_softmax(-1)
    nll = -logp.gather(-1, tokens[:, 1:, None])[..., 0]
    loss = torch.full(tokens.shape, float("nan"), device=logits.device)
    loss[:, 1:] = nll
    if mask is not None:
        loss[mask == 0] = float("nan")
    return loss


def cache_holds(past: Any, n_pos: int) -> bool:
    """Whether `past`, a KV cache a bridge handed back, holds keys and values for `n_pos`
    positions. Under transformers 5.24 the bridged GPT-2 returns a cache it never filled; a run
    continued from it would silently skip the prefix, so callers then recompute instead."""
    try:
        return int(past.get_seq_length()) == n_pos
    except Exception:  # noqa: BLE001 - no cache, or one without a length
        return False


class LogitOffset:
    """The per-position constant that centring the unembedding removed from the logits:
    ``norm(resid) @ mean_v(W_U) + mean_v(b_U)``, with the final norm and unembedding as they
    were before TransformerLens processed the weights (a copy of the norm module, and the
    unembedding's mean row). Architecture-agnostic: it reads the Hugging Face modules behind
    the bridge's ``ln_final`` and ``unembed``, so it needs no per-architecture weight names."""

    def __init__(self, norm: torch.nn.Module | None, mean_row: torch.Tensor, mean_bias: float):
        self.norm, self.mean_row, self.mean_bias = norm, mean_row, float(mean_bias)

    @classmethod
    def capture(cls, bridge: Any) -> LogitOffset | None:
        """From a bridge whose weights are not processed yet; None where the modules are not
        the usual final norm + linear head."""
        import copy

        head = getattr(getattr(bridge, "unembed", None), "original_component", None)
        norm = getattr(getattr(bridge, "ln_final", None), "original_component", None)
        weight = getattr(head, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or norm is None:
            return None
        cap = getattr(bridge.cfg, "output_logits_soft_cap", None)
        if cap is not None and cap > 0:  # TransformerLens does not centre soft-capped logits
            return cls(None, torch.zeros(weight.shape[1], dtype=torch.float64), 0.0)
        bias = getattr(head, "bias", None)
        with torch.no_grad():
            return cls(copy.deepcopy(norm).eval(), weight.detach().double().mean(0),
                       0.0 if bias is None else float(bias.detach().double().mean()))

    def __call__(self, resid: torch.Tensor) -> torch.Tensor:
        """Tensor[...]: the shift at each position of `resid` [..., d_model]."""
        if self.norm is None:
            return torch.zeros(resid.shape[:-1], dtype=resid.dtype, device=resid.device)
        with torch.no_grad():
            x = self.norm.to(resid.device)(resid)
            return (x.double() @ self.mean_row.to(resid.device) + self.mean_bias).to(resid.dtype)


def load_model(name_or_path: str | Path = "demo", *, device: str | torch.device | None = None,
               dtype: str | torch.dtype | None = None, fold_ln: bool = True) -> Model:
    """Load a model as a `Model`.

    name_or_path: ``"demo"`` (the bundled offline model), a local folder in Hugging Face format
    (loaded offline), or a hub name such as ``"gpt2"`` (needs the network). All three go through
    `TransformerBridge.boot_transformers`. `fold_ln` folds LayerNorm into the weights at load
    (`enable_compatibility_mode`), which direct logit attribution and the logit lens need.

    TransformerLens's processing moves each head's constant term (b_V and the first norm's bias
    through W_V) into the layer's output bias; `Model.head_value_bias` keeps it per head
    (captured before the weights change), so per-head attributions can put it back. Centring
    the unembedding shifts the logits by a per-position constant; `Model.logit_shift` gives it
    back (also captured before)."""
    from transformer_lens import TransformerBridge

    dev, dt = resolve_device(device), resolve_dtype(dtype)
    if str(name_or_path) == "demo":
        from .demo import MODEL_DIR

        path, label = MODEL_DIR, "demo"
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"The demo model is missing from {path}. Reinstall the "
                                    "package, or train it with scripts/train_demo_model.py.")
    else:
        path, label = Path(name_or_path).expanduser(), str(name_or_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*")
        if path.is_dir():
            bridge = _boot_local(path, dev, dt)
        elif path.exists() or str(name_or_path).startswith((".", "/", "~")):
            raise FileNotFoundError(f"{str(name_or_path)!r} is not a folder holding a Hugging "
                                    "Face model (config.json, weights and tokenizer files).")
        else:
            bridge = TransformerBridge.boot_transformers(str(name_or_path), device=dev, dtype=dt)
        offset = LogitOffset(None, torch.zeros(1), 0.0)  # unprocessed: the logits are the model's
        value_bias = None
        if fold_ln:
            offset = LogitOffset.capture(bridge)
            value_bias = _head_value_bias(bridge)
            bridge.enable_compatibility_mode(disable_warnings=True)
    bridge.eval()
    model = Model(bridge, name=label, logit_offset=offset)
    model.head_value_bias = value_bias
    return model


def _head_value_bias(bridge: Any) -> torch.Tensor | None:
    """Tensor[layer, head, d_head]: each head's z for a zero residual stream (its value bias,
    the first norm's bias through W_V included: attention weights sum to 1, so z is that
    constant at every position), read with hooks from one forward of n_layers rows, row l
    zeroing the stream entering block l. Before weight processing, which folds it into b_O.
    None where the hooks are missing."""
    L = int(bridge.cfg.n_layers)
    got: dict[int, torch.Tensor] = {}

    def zero_row(row: int):
        def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            x = x.clone()
            x[row] = 0
            return x
        return hook

    def read(layer: int):
        def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            got[layer] = x[layer, 0].detach().float().clone()
            return x
        return hook

    fwd = [(f"blocks.{i}.hook_resid_pre", zero_row(i)) for i in range(L)]
    fwd += [(f"blocks.{i}.attn.hook_z", read(i)) for i in range(L)]
    tok = getattr(bridge.tokenizer, "bos_token_id", None) or 0
    try:
        device = next(bridge.parameters()).device
        with torch.no_grad():
            bridge.run_with_hooks(torch.full((L, 1), int(tok), device=device), fwd_hooks=fwd)
    except Exception:  # noqa: BLE001 - an architecture without these hooks: no constants
        return None
    if len(got) != L or any(v.ndim != 2 for v in got.values()):
        return None
    return torch.stack([got[i] for i in range(L)]).cpu()


def _boot_local(path: Path, device: torch.device, dtype: torch.dtype) -> Any:
    """Boot a bridge from a local Hugging Face folder, with no network."""
    from transformer_lens import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} has no config.json: it is not a Hugging Face model "
                                "folder (save one with model.save_pretrained(folder) and "
                                "tokenizer.save_pretrained(folder)).")
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar in every notebook is noise
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    return TransformerBridge.boot_transformers(str(path), hf_model=hf_model, tokenizer=tokenizer,
                                               device=device, dtype=dtype)
