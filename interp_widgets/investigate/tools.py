"""The tools an investigation may run: each a thin call of a public analysis function, with a
JSON schema for its arguments (the LLM sees these) and a JSON-safe result of numbers.

Only these tools can run; nothing executes code an LLM wrote. A tool returns
``{"summary": str, ...numbers...}``; the summary is what an LLM reads back, so it is short.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..analysis.attention import attention_patterns, head_scores
from ..analysis.attribution import direct_logit_attribution
from ..analysis.features import find_features
from ..analysis.neurons import find_neurons
from ..analysis.patching import activation_patching
from ..analysis.probing import sparse_probe
from ..analysis.steering import sae_direction, steering_shift
from ..model import Model
from .behaviour import Behaviour, answer_ids
from .interventions import Unit, unit_effect


class ToolError(ValueError):
    """A tool was called with a name or arguments it does not take; the message is for the
    caller (a person or an LLM) to read and correct."""


@dataclass
class Context:
    """What every tool sees: the model, the behaviour, an optional SAE and corpus."""

    model: Model
    behaviour: Behaviour
    sae: Any = None
    corpus: list[str] | None = None
    scans: dict = field(default_factory=dict)  # layer -> NeuronScan, reused across steps


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict  # JSON schema of the arguments
    run: Callable[..., dict]

    def schema(self) -> dict:
        """The OpenAI tool-calling schema of this tool."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}


def _grid(t: torch.Tensor) -> list:
    return [[round(float(x), 4) for x in row] for row in t.reshape(t.shape[0], -1)]


def _top_cells(grid: torch.Tensor, k: int, label: Callable[[int, int], str]) -> list[dict]:
    flat = grid.reshape(-1)
    idx = flat.abs().topk(min(k, flat.numel())).indices.tolist()
    w = grid.shape[1]
    return [{"unit": label(i // w, i % w), "layer": i // w, "index": i % w,
             "value": round(float(flat[i]), 4)} for i in idx]


# ---- tools ------------------------------------------------------------------------------------


def check_behaviour(ctx: Context) -> dict:
    """The metric on the clean prompts (and their corrupt twins)."""
    clean = ctx.behaviour.values(ctx.model)
    out = {"n_prompts": len(clean), "clean_mean": float(clean.mean()),
           "fraction_right": float((clean > 0).float().mean()),
           "per_prompt": [round(float(x), 4) for x in clean]}
    if ctx.behaviour.corrupt is not None:
        corrupt = ctx.behaviour.values(ctx.model, "corrupt")
        out["corrupt_mean"] = float(corrupt.mean())
    out["summary"] = (f"metric {out['clean_mean']:.2f} on {len(clean)} prompts, right on "
                      f"{out['fraction_right']:.0%}"
                      + (f"; corrupt {out['corrupt_mean']:.2f}" if "corrupt_mean" in out else ""))
    return out


def _patch(ctx: Context, component: str) -> torch.Tensor:
    """Denoising patching over every prompt group, every position at once; normalised 0..1
    (0 corrupt, 1 clean) with the means over all prompts."""
    b, model = ctx.behaviour, ctx.model
    if b.corrupt is None:
        raise ToolError("Patching needs corrupt prompts and this behaviour has none; use "
                        "direct_logit_attribution or ablate instead.")
    clean, corrupt = b.tokens(model), b.tokens(model, "corrupt")
    total, c_val, k_val, n = None, 0.0, 0.0, 0
    for idx in b.groups(model):
        res = activation_patching(model, torch.stack([clean[i] for i in idx]),
                                  torch.stack([corrupt[i] for i in idx]), b.metric(idx),
                                  component=component, positions="all", normalize=False)
        w = len(idx)
        total = res.values * w if total is None else total + res.values * w
        c_val, k_val, n = c_val + res.clean_value * w, k_val + res.corrupt_value * w, n + w
    raw, c_val, k_val = total / n, c_val / n, k_val / n
    if abs(c_val - k_val) < 1e-6:
        raise ToolError("The metric is the same on clean and corrupt prompts: nothing to patch.")
    return (raw - k_val) / (c_val - k_val)


def patch_heads(ctx: Context, k: int = 8) -> dict:
    """Activation patching of every head's output (all positions) from clean into corrupt."""
    grid = _patch(ctx, "head_out")  # [layer, head]
    top = _top_cells(grid, k, lambda la, h: f"L{la}H{h}")
    return {"grid": _grid(grid), "top": top, "summary": "heads restoring the most (0 = corrupt, "
            "1 = clean): " + ", ".join(f"{t['unit']} {t['value']:+.2f}" for t in top[:5])}


def patch_layers(ctx: Context) -> dict:
    """Activation patching of each layer's attention and MLP output (all positions)."""
    attn, mlp = _patch(ctx, "attn_out"), _patch(ctx, "mlp_out")  # [layer]
    return {"attn_out": [round(float(x), 4) for x in attn],
            "mlp_out": [round(float(x), 4) for x in mlp],
            "summary": "restored by attn_out per layer " + " ".join(f"{x:+.2f}" for x in attn)
            + "; by mlp_out " + " ".join(f"{x:+.2f}" for x in mlp)}


def logit_attribution(ctx: Context, k: int = 8) -> dict:
    """Direct logit attribution of the metric, averaged over the prompts."""
    model, b = ctx.model, ctx.behaviour
    ans, wrong = answer_ids(model, b)
    toks = b.tokens(model)
    parts = [direct_logit_attribution(model, toks[i][None], ans[i], wrong[i])
             for i in range(len(b))]
    heads = torch.stack([p.heads for p in parts]).mean(0)  # [layer, head]
    mlp = torch.stack([p.mlp for p in parts]).mean(0)  # [layer]
    neurons = torch.stack([p.neurons for p in parts]).mean(0)  # [layer, d_mlp]
    top_heads = _top_cells(heads, k, lambda la, h: f"L{la}H{h}")
    top_neurons = _top_cells(neurons, k, lambda la, n: f"L{la}N{n}")
    total = float(torch.tensor([p.logit_diff for p in parts]).mean())
    return {"heads": _grid(heads), "mlp": [round(float(x), 4) for x in mlp],
            "top_heads": top_heads, "top_neurons": top_neurons, "logit_diff": total,
            "summary": f"mean logit diff {total:.2f}; heads writing most: "
            + ", ".join(f"{t['unit']} {t['value']:+.2f}" for t in top_heads[:4])
            + "; neurons: " + ", ".join(f"{t['unit']} {t['value']:+.2f}" for t in top_neurons[:4])}


def head_types(ctx: Context, span: int = 20, n: int = 4) -> dict:
    """Previous-token, induction and duplicate-token scores of every head (TransformerLens's
    detection patterns) on repeated random spans."""
    from ..demo.tasks import random_tokens
    from .behaviour import _bos_ids

    model = ctx.model
    gen = torch.Generator().manual_seed(0)
    body = random_tokens((n, span), gen, model.tokenizer)
    bos = _bos_ids(model)
    scores: dict[str, list[torch.Tensor]] = {}
    for row in body:
        _, toks, pats = attention_patterns(model, torch.cat([bos, row, row]))
        for name, s in head_scores(pats, toks).items():
            scores.setdefault(name, []).append(s)
    mean = {name: torch.stack(v).mean(0) for name, v in scores.items()}  # [layer, head] each
    out: dict[str, Any] = {name: _grid(v) for name, v in mean.items()}
    typed = []
    for name, v in mean.items():
        for la, h in (v > 0.5).nonzero().tolist():
            typed.append({"unit": f"L{la}H{h}", "layer": la, "index": h, "type": name,
                          "score": round(float(v[la, h]), 3)})
    out["typed"] = typed
    out["summary"] = ("heads scoring above 0.5: " + ", ".join(
        f"{t['unit']} {t['type']} {t['score']:.2f}" for t in typed)) if typed else \
        "no head scores above 0.5 as previous-token, induction or duplicate-token"
    return out


def neuron_search(ctx: Context, k: int = 5) -> dict:
    """Neurons whose output directly raises the answer over the wrong token
    (`iw.find_neurons`), for each distinct (answer, wrong) pair of the behaviour."""
    model = ctx.model
    found = []
    for a, w in _answer_pairs(ctx, "neuron_search"):
        df = find_neurons(model, a, against=w, k=k)
        found += [{"unit": f"L{r.layer}N{r.neuron}", "layer": int(r.layer),
                   "index": int(r.neuron), "for": a, "effect": round(float(r.effect), 4)}
                  for r in df.itertuples()]
    return {"neurons": found, "summary": "neurons writing the answer: " + ", ".join(
        f"{f['unit']} ({f['for']!r} {f['effect']:+.2f})" for f in found[:6])}


def _answer_pairs(ctx: Context, tool: str) -> list[tuple[str, str]]:
    b = ctx.behaviour
    pairs = sorted({(a, w) for a, w in zip(b.answer, b.wrong)
                    if isinstance(a, str) and isinstance(w, str)})
    if not pairs or len(pairs) > 4:
        raise ToolError(f"{tool} needs at most 4 distinct (answer, wrong) text pairs; this "
                        f"behaviour has {len(pairs)}. Use direct_logit_attribution instead.")
    return pairs


def _need_sae(ctx: Context, tool: str) -> Any:
    if ctx.sae is None:
        raise ToolError(f"{tool} needs an SAE: pass sae= to iw.investigate.")
    return ctx.sae


def feature_search(ctx: Context, k: int = 5) -> dict:
    """SAE features whose decoder direction raises the answer over the wrong token
    (`iw.find_features`), for each distinct (answer, wrong) pair."""
    sae = _need_sae(ctx, "feature_search")
    layer = int(sae.hook_name.split(".")[1])
    found = []
    for a, w in _answer_pairs(ctx, "feature_search"):
        df = find_features(ctx.model, sae, a, against=w, k=k)
        found += [{"unit": f"L{layer}F{r.feature}", "layer": layer, "index": int(r.feature),
                   "for": a, "effect": round(float(r.effect), 4)} for r in df.itertuples()]
    return {"features": found, "summary": "features writing the answer: " + ", ".join(
        f"{f['unit']} ({f['for']!r} {f['effect']:+.2f})" for f in found[:6])}


def steer_feature(ctx: Context, index: int, coeff: float = 4.0) -> dict:
    """Add `coeff` times an SAE feature's decoder direction at the SAE's hook and measure how
    the metric moves (`iw.steering_shift`, bootstrap over prompts)."""
    sae = _need_sae(ctx, "steer_feature")
    b, model = ctx.behaviour, ctx.model
    try:
        vec = sae_direction(sae, int(index))
    except ValueError as err:
        raise ToolError(str(err)) from None
    prompts = [t.tolist() for t in b.tokens(model)]
    est = steering_shift(model, prompts, b.metric().bind(model), [(vec, vec.layer, float(coeff))])
    return {"unit": f"L{vec.layer}F{index}", "coeff": float(coeff), "shift": float(est.value),
            "low": float(est.low), "high": float(est.high),
            "summary": f"adding {coeff:g} x feature {index} moves the metric by {est}"}


def probe(ctx: Context, layer: int, k: int = 4, n_folds: int = 4) -> dict:
    """Is the answer linearly readable from the residual stream after `layer`, at the last
    position? k-sparse and dense probes (`iw.sparse_probe`, repeated folds over prompts, F1
    with its interval) predicting which answer each prompt has."""
    model, b = ctx.model, ctx.behaviour
    answers = [str(a) for a in b.answer]
    kinds = sorted(set(answers))
    if len(kinds) != 2:
        raise ToolError(f"probe needs prompts with exactly two distinct answers (a binary label);"
                        f" this behaviour has {len(kinds)}.")
    L = model.cfg.n_layers
    if not isinstance(layer, int) or not 0 <= layer < L:
        raise ToolError(f"layer {layer!r} is out of range: use 0 .. {L - 1}.")
    name = f"blocks.{layer}.hook_resid_post"
    toks = b.tokens(model)
    rows = torch.empty(len(b), model.cfg.d_model)
    for idx in b.groups(model):
        run = model.run(torch.stack([toks[i] for i in idx]), names=[name])
        rows[idx] = run.cache[name][:, -1].float().cpu()
    try:
        res = sparse_probe(rows.numpy(), answers, positive=kinds[1], k=(1, int(k)),
                           groups=None, n_folds=int(n_folds))
    except ValueError as err:
        raise ToolError(str(err)) from None
    ci = res.dense_f1_ci
    return {"layer": layer, "positive": kinds[1], "k": res.k, "f1": res.f1,
            "dense_f1": res.dense_f1, "dense_low": None if ci is None else float(ci.low),
            "dense_high": None if ci is None else float(ci.high), "units": res.selected,
            "summary": f"after layer {layer}: dense probe F1 "
            + (f"{ci}" if ci is not None else f"{res.dense_f1:.2f}")
            + f" for {kinds[1]!r}; k={res.k[-1]} F1 {res.f1[-1]:.2f}"}


def ablate(ctx: Context, kind: str, layer: int, index: int | None = None,
           component: str | None = None, position: int | None = None, mode: str = "auto",
           prompts: str = "all") -> dict:
    """Knock one unit out on the behaviour's prompts (`unit_effect`); the effect is the
    metric's mean drop with a bootstrap interval over prompts. prompts: "all", or "answer=TEXT"
    to use only the prompts whose answer is TEXT."""
    b = ctx.behaviour
    if prompts != "all":
        if not prompts.startswith("answer="):
            raise ToolError(f"prompts must be 'all' or 'answer=TEXT'; got {prompts!r}.")
        want = prompts[len("answer="):]
        idx = [i for i, a in enumerate(b.answer) if a == want]
        if not idx:
            raise ToolError(f"No prompt has the answer {want!r}; the answers are "
                            f"{sorted({str(a) for a in b.answer})}.")
        b = b.subset(idx)
    try:
        unit = Unit(kind, int(layer), None if index is None else int(index), component,
                    None if position is None else int(position))
        e = unit_effect(ctx.model, b, unit, mode=mode, sae=ctx.sae)
    except (TypeError, ValueError) as err:
        raise ToolError(str(err)) from None
    return {"unit": unit.label, "kind": kind, "layer": unit.layer, "index": unit.index,
            "component": component, "position": position, "mode": e.mode, "prompts": prompts,
            "effect": e.effect, "low": e.estimate.low, "high": e.estimate.high,
            "spread": e.spread, "fraction": e.fraction, "clean_mean": float(e.clean.mean()),
            "n_prompts": len(b),
            "summary": f"knocking out {unit.label} ({e.mode}) lowers the metric by "
            f"{e.estimate:.3f} of {float(e.clean.mean()):.2f}"}


def explain_neuron(ctx: Context, layer: int, index: int, n_docs: int = 200) -> dict:
    """Scan a neuron over the corpus, explain it (offline statistical explainer) and score the
    explanation by simulation, with a bootstrap interval over records."""
    from .. import autointerp
    from ..analysis.corpus import scan_neurons
    from ..analysis.uncertainty import bootstrap_correlation
    from ..demo import corpus as demo_corpus

    key = (int(layer), n_docs)
    if key not in ctx.scans:
        docs = ctx.corpus if ctx.corpus is not None else demo_corpus(n_docs, seed=99)
        ctx.scans[key] = scan_neurons(ctx.model, docs[:n_docs], int(layer), k=20,
                                      progress=False, correlations=False)
    scan = ctx.scans[key]
    records = autointerp.records_from_scan(scan, int(index))
    train, test = autointerp.split_records(records)
    text = autointerp.explain(train, explainer="offline")
    pred = autointerp.simulate(text, test, simulator="offline")
    true = [list(r.activations) for r in test]
    est = bootstrap_correlation(true, pred)
    return {"unit": f"L{layer}N{index}", "layer": int(layer), "index": int(index),
            "explanation": str(text), "score": float(est.value), "low": float(est.low),
            "high": float(est.high), "n_records": len(test),
            "summary": f"L{layer}N{index}: {str(text)[:160]} (simulation score {est})"}


def _schema(props: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}


_INT = {"type": "integer"}
TOOLS: dict[str, Tool] = {t.name: t for t in [
    Tool("check_behaviour", "Measure the behaviour's metric on its prompts (and corrupt twins).",
         _schema({}, []), check_behaviour),
    Tool("patch_layers", "Activation patching of each layer's attention and MLP output.",
         _schema({}, []), patch_layers),
    Tool("patch_heads", "Activation patching of every attention head's output (all positions).",
         _schema({"k": _INT}, []), patch_heads),
    Tool("direct_logit_attribution", "What each head, MLP and neuron writes directly to the "
         "metric, averaged over prompts.", _schema({"k": _INT}, []), logit_attribution),
    Tool("head_types", "Previous-token / induction / duplicate-token scores of every head.",
         _schema({}, []), head_types),
    Tool("neuron_search", "Neurons whose output weights raise the answer over the wrong token.",
         _schema({"k": _INT}, []), neuron_search),
    Tool("feature_search", "SAE features whose decoder raises the answer over the wrong token.",
         _schema({"k": _INT}, []), feature_search),
    Tool("steer_feature", "Add a multiple of an SAE feature's direction and measure the metric.",
         _schema({"index": _INT, "coeff": {"type": "number"}}, ["index"]), steer_feature),
    Tool("probe", "Sparse and dense probes for the answer on the residual stream after a "
         "layer (last position), F1 with its interval.",
         _schema({"layer": _INT, "k": _INT, "n_folds": _INT}, ["layer"]), probe),
    Tool("ablate", "Verify a claim: knock out one unit (head, neuron, feature or component) and "
         "measure the metric's drop with a bootstrap interval over prompts.",
         _schema({"kind": {"type": "string", "enum": ["head", "neuron", "feature", "component"]},
                  "layer": _INT, "index": _INT,
                  "component": {"type": "string", "enum": ["attn_out", "mlp_out"]},
                  "position": _INT,
                  "mode": {"type": "string", "enum": ["auto", "corrupt", "mean", "zero"]},
                  "prompts": {"type": "string"}}, ["kind", "layer"]), ablate),
    Tool("explain_neuron", "Scan a neuron over the corpus, explain and score it.",
         _schema({"layer": _INT, "index": _INT}, ["layer", "index"]), explain_neuron),
]}


def call_tool(ctx: Context, name: str, args: dict | None) -> dict:
    """Run tool `name` with `args`; unknown tools and bad arguments raise `ToolError`."""
    if name not in TOOLS:
        raise ToolError(f"Unknown tool {name!r}; the tools are: {', '.join(TOOLS)}.")
    tool = TOOLS[name]
    args = {} if args is None else args
    if not isinstance(args, dict):
        raise ToolError(f"Arguments of {name} must be a JSON object; got {type(args).__name__}.")
    allowed = set(tool.parameters["properties"])
    extra = sorted(set(args) - allowed)
    if extra:
        raise ToolError(f"{name} takes no argument {extra}; it takes {sorted(allowed) or 'none'}.")
    missing = [a for a in tool.parameters["required"] if a not in args]
    if missing:
        raise ToolError(f"{name} needs the arguments {missing}.")
    for a, v in args.items():
        want = tool.parameters["properties"][a].get("type")
        if want == "integer" and not (isinstance(v, int) and not isinstance(v, bool)):
            raise ToolError(f"{name}: argument {a!r} must be an integer; got {v!r}.")
        if want == "number" and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ToolError(f"{name}: argument {a!r} must be a number; got {v!r}.")
        if want == "string" and not isinstance(v, str):
            raise ToolError(f"{name}: argument {a!r} must be a string; got {v!r}.")
    return tool.run(ctx, **args)
