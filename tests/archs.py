"""The architecture matrix: small, randomly initialised Hugging Face models built from configs
(no downloads) for the families TransformerLens 4's bridge wraps that people study, plus the
plain-PyTorch hooks on the Hugging Face module that the tests check our numbers against.

Each model is saved with the demo's BPE tokenizer to a folder (the bridge needs a tokenizer with
a path) and loaded with `iw.load_model(folder)`, the path a user's checkpoint takes. Qwen2's
tokenizer has no BOS token, as Qwen2/2.5's has none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import interp_widgets as iw
from interp_widgets.demo import MODEL_DIR

VOCAB = 3307  # the demo tokenizer's
SPECIAL = "<|endoftext|>"  # id 0 in the demo tokenizer


@dataclass(frozen=True)
class Arch:
    """One family: how to build its config and model, and where its pieces sit in the HF module.

    layers: HF module -> its list of decoder layers. down: one decoder layer -> the MLP's output
    projection (its input is the MLP's post-activation). gate / up: the gate and up projections
    of a gated MLP (None for GPT-2-style MLPs; Phi-3 fuses them into one `gate_up_proj`).
    final_norm: HF module -> the norm before the unembedding."""

    name: str
    make: Callable[[int, dict], tuple]  # (n_layers, overrides) -> (config, model class)
    layers: Callable[[torch.nn.Module], torch.nn.ModuleList]
    down: Callable[[torch.nn.Module], torch.nn.Module]
    final_norm: Callable[[torch.nn.Module], torch.nn.Module]
    gated: bool
    bos: bool = True


def _common(n_layers: int, **kw) -> dict:
    base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96,
                num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=256, bos_token_id=0, eos_token_id=0, pad_token_id=None)
    base.update(kw)
    return base


def _gpt2(n, kw):
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2Config(**{**dict(vocab_size=VOCAB, n_embd=64, n_layer=n, n_head=4, n_positions=256,
                                bos_token_id=0, eos_token_id=0, pad_token_id=0), **kw}), \
        GPT2LMHeadModel


def _neox(n, kw):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    c = _common(n, rotary_pct=0.25, **kw)
    c.pop("num_key_value_heads")
    return GPTNeoXConfig(**c), GPTNeoXForCausalLM


def _hf(config: str, model: str, **extra):
    def make(n, kw):
        import transformers

        return getattr(transformers, config)(**_common(n, **{**extra, **kw})), \
            getattr(transformers, model)

    return make


def _llama_layers(m):
    return m.model.layers


def _llama_norm(m):
    return m.model.norm


ARCHS: dict[str, Arch] = {a.name: a for a in [
    Arch("gpt2", _gpt2, lambda m: m.transformer.h, lambda b: b.mlp.c_proj,
         lambda m: m.transformer.ln_f, gated=False),
    Arch("neox", _neox, lambda m: m.gpt_neox.layers, lambda b: b.mlp.dense_4h_to_h,
         lambda m: m.gpt_neox.final_layer_norm, gated=False),
    Arch("llama", _hf("LlamaConfig", "LlamaForCausalLM"), _llama_layers,
         lambda b: b.mlp.down_proj, _llama_norm, gated=True),
    Arch("mistral", _hf("MistralConfig", "MistralForCausalLM"), _llama_layers,
         lambda b: b.mlp.down_proj, _llama_norm, gated=True),
    Arch("qwen2", _hf("Qwen2Config", "Qwen2ForCausalLM"), _llama_layers,
         lambda b: b.mlp.down_proj, _llama_norm, gated=True, bos=False),
    Arch("gemma2", _hf("Gemma2Config", "Gemma2ForCausalLM", head_dim=16), _llama_layers,
         lambda b: b.mlp.down_proj, _llama_norm, gated=True),
    Arch("gemma3", _hf("Gemma3TextConfig", "Gemma3ForCausalLM", head_dim=16), _llama_layers,
         lambda b: b.mlp.down_proj, _llama_norm, gated=True),
    Arch("phi3", _hf("Phi3Config", "Phi3ForCausalLM"), _llama_layers,
         lambda b: b.mlp.down_proj, _llama_norm, gated=True),
]}

#: the architectures the default (CI) run checks; the rest run with --run-slow
FAST = ("gpt2", "llama", "qwen2", "gemma2")


def tokenizer(bos: bool = True):
    """The demo's BPE tokenizer; without a BOS token when `bos` is False (as Qwen2's)."""
    from transformers import PreTrainedTokenizerFast

    kw = dict(tokenizer_file=str(MODEL_DIR / "tokenizer.json"), eos_token=SPECIAL,
              pad_token=SPECIAL, unk_token=SPECIAL)
    if bos:
        kw["bos_token"] = SPECIAL
    return PreTrainedTokenizerFast(**kw)


def build(name: str, folder: Path, *, n_layers: int = 2, seed: int = 0, embed_scale: float = 1.0,
          **overrides) -> tuple[torch.nn.Module, Path]:
    """(HF model in eval mode, folder holding it and its tokenizer): a random `name` model.

    embed_scale multiplies the token embeddings (random init gives tiny ones, which makes some
    questions, such as attribution baselines, easier than on trained models)."""
    arch = ARCHS[name]
    config, cls = arch.make(n_layers, overrides)
    torch.manual_seed(seed)
    hf = cls(config).eval()
    if embed_scale != 1.0:
        with torch.no_grad():
            hf.get_input_embeddings().weight.mul_(embed_scale)
    folder = Path(folder) / name
    hf.save_pretrained(folder)
    tokenizer(arch.bos).save_pretrained(folder)
    return hf, folder


def load(name: str, folder: Path, **kw) -> tuple[torch.nn.Module, iw.Model]:
    """(HF model, `iw.load_model` of the same weights on CPU)."""
    hf, path = build(name, folder, **kw)
    return hf, iw.load_model(path, device="cpu")


# ---- plain-PyTorch references on the HF module ------------------------------------------------


def hf_forward(arch: Arch, hf: torch.nn.Module, tokens: torch.Tensor, *,
               patch: dict[int, Callable[[torch.Tensor], torch.Tensor]] | None = None
               ) -> dict[str, object]:
    """One HF forward of `tokens` [batch, pos] with hooks on the module: {"logits": [batch, pos,
    vocab], "resid_pre": [layer][batch, pos, d_model] (each layer's input), "mlp_post":
    [layer][batch, pos, d_mlp] (the input of the MLP's output projection), and for gated MLPs
    "gate"/"up": [layer][batch, pos, d_mlp] (the two projections' outputs)}.

    patch: {layer: f}, replacing that layer's input hidden state h by f(h)."""
    out: dict[str, list] = {"resid_pre": [], "mlp_post": [], "gate": [], "up": []}
    handles = []
    layers = arch.layers(hf)
    for i, block in enumerate(layers):
        def pre(mod, args, kwargs, i=i):
            h = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            if patch and i in patch:
                h = patch[i](h)
            out["resid_pre"].append(h.detach().clone())
            if "hidden_states" in kwargs:
                return args, {**kwargs, "hidden_states": h}
            return (h,) + tuple(args[1:]), kwargs

        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(arch.down(block).register_forward_pre_hook(
            lambda mod, args: out["mlp_post"].append(args[0].detach().clone())))
        mlp = block.mlp
        if hasattr(mlp, "gate_proj"):
            handles.append(mlp.gate_proj.register_forward_hook(
                lambda mod, a, o: out["gate"].append(o.detach().clone())))
            handles.append(mlp.up_proj.register_forward_hook(
                lambda mod, a, o: out["up"].append(o.detach().clone())))
        elif hasattr(mlp, "gate_up_proj"):  # Phi-3: [gate | up] in one projection
            def split(mod, a, o):
                g, u = o.chunk(2, dim=-1)
                out["gate"].append(g.detach().clone())
                out["up"].append(u.detach().clone())

            handles.append(mlp.gate_up_proj.register_forward_hook(split))
    try:
        with torch.no_grad():
            logits = hf(tokens).logits
    finally:
        for h in handles:
            h.remove()
    return {"logits": logits, **out}


def hf_unembed(arch: Arch, hf: torch.nn.Module, resid: torch.Tensor) -> torch.Tensor:
    """Logits [batch, pos, vocab]: the HF final norm, unembedding and final soft-cap (Gemma 2)
    applied to a residual stream [batch, pos, d_model]."""
    with torch.no_grad():
        logits = hf.get_output_embeddings()(arch.final_norm(hf)(resid))
    cap = getattr(hf.config, "final_logit_softcapping", None)
    return logits if not cap else torch.tanh(logits / cap) * cap


def centred(x: torch.Tensor, arch_norm: str) -> torch.Tensor:
    """`x` with its mean over d_model removed on LayerNorm models (where TransformerLens centres
    the weights that write to the residual stream, so the stream differs by its mean), as is on
    RMSNorm models (nothing is centred there)."""
    return x - x.mean(-1, keepdim=True) if str(arch_norm).startswith("LN") else x
