"""How an investigation chooses its tools: the fixed offline plan, or an LLM with tool calling.

The offline plan (no network, deterministic):
1. `check_behaviour`: the metric on the prompts (and corrupt twins).
2. With corrupt twins, localise: `patch_layers`, `patch_heads` (denoising, every position).
3. Decompose: `direct_logit_attribution` (heads, MLPs, neurons, averaged over prompts).
4. Type the heads: `head_types` (previous-token / induction / duplicate-token scores).
5. Find units: `neuron_search` (neurons whose weights write the answer) and, given an SAE,
   `feature_search` (features whose decoder does), when the behaviour has at most 4 distinct
   answer/wrong pairs.
6. Candidates: heads restoring >= 10% under patching or writing >= 10% of the logit difference,
   and every typed head (a type says what a head does, not that this behaviour uses it);
   layers whose attention/MLP output restores >= 20%; neurons writing >= 5%; the two best
   `neuron_search` neurons and `feature_search` features per answer (checked on the prompts
   with that answer); at most
   `max_units` of each kind, strongest first.
7. Verify every candidate with `ablate` (corrupt twin or mean ablation) and record a claim,
   verified or refuted (see `investigation`).
8. Explain every verified neuron (`explain_neuron`) and record a "means" claim.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .investigation import Claim, Runner, Step
from .tools import TOOLS

SYSTEM = """You investigate how a language model implements a behaviour, using only the tools \
given. Localise with patching, decompose with direct logit attribution, type the heads, find \
neurons, then verify every unit you believe matters with `ablate` (each claim must be checked \
by an intervention). Reply with a short summary and no tool call when you are done."""


# ---- claims -------------------------------------------------------------------------------------


def ablation_claim(step: Step, found_by: list[int], min_effect: float, note: str = "") -> Claim:
    """The "carries" claim checked by an `ablate` step: verified when the drop exceeds twice its
    bootstrap standard error and `min_effect` of the clean metric."""
    r = step.result
    frac = r["fraction"] if r["fraction"] is not None else math.nan
    ok = (r["effect"] > 2 * r["spread"]) and (not math.isnan(frac)) and frac >= min_effect
    where = "every position" if r["position"] is None else f"position {r['position']}"
    who = r["unit"] + (f" ({note})" if note else "")
    statement = (f"{who} carries {r['effect']:.3f} [{_f(r['low'])}, {_f(r['high'])}] of the "
                 f"metric's {r['clean_mean']:.3f} ({_pct(frac)}) at {where}: knocked out "
                 f"({r['mode']}) on {r['n_prompts']} prompts"
                 + ("" if r["prompts"] == "all" else f" with {r['prompts']}"))
    if not ok:
        statement += (f"; refuted: the drop is not above twice its spread ({r['spread']:.3f}) "
                      f"and {min_effect:.0%} of the metric")
    return Claim(kind=r["kind"], layer=r["layer"], index=r["index"], position=r["position"],
                 effect=r["effect"], spread=r["spread"], verified=bool(ok), statement=statement,
                 evidence=sorted(set(found_by + [step.id])), what="carries",
                 component=r["component"], low=_num(r["low"]), high=_num(r["high"]),
                 fraction=frac)


def explanation_claim(step: Step, found_by: list[int], min_score: float) -> Claim:
    """The "means" claim of an `explain_neuron` step: verified when the score's interval lies
    above `min_score`."""
    r = step.result
    low = _num(r["low"])
    ok = not math.isnan(low) and low > min_score
    spread = (_num(r["high"]) - low) / (2 * 1.959964) if not math.isnan(low) else math.nan
    statement = (f"{r['unit']} means: {r['explanation'][:200]} (simulation score "
                 f"{r['score']:.2f} [{_f(r['low'])}, {_f(r['high'])}] on {r['n_records']} "
                 "held-out records)" + ("" if ok else f"; refuted: not above {min_score}"))
    return Claim(kind="neuron", layer=r["layer"], index=r["index"], position=None,
                 effect=r["score"], spread=spread, verified=bool(ok), statement=statement,
                 evidence=sorted(set(found_by + [step.id])), what="means",
                 low=low, high=_num(r["high"]))


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def _f(x: Any) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.0%}"


# ---- the offline plan ---------------------------------------------------------------------------


def run_plan(runner: Runner, *, min_effect: float, min_score: float, max_units: int) -> None:
    """The fixed plan of the module docstring."""
    inv, b = runner.inv, runner.ctx.behaviour

    def go(tool: str, args: dict | None = None) -> Step | None:
        why = runner.over()
        if why:
            inv.stopped = inv.stopped or why
            return None
        return runner.run(tool, args)

    cands: dict[tuple, dict] = {}  # (kind, layer, index, component) -> candidate

    def add(kind, layer, index, strength, sid, component=None, prompts="all", note=""):
        key = (kind, layer, index, component, prompts)
        c = cands.setdefault(key, {"kind": kind, "layer": layer, "index": index,
                                   "component": component, "prompts": prompts,
                                   "strength": 0.0, "found_by": [], "note": note})
        c["strength"] = max(c["strength"], abs(strength))
        c["found_by"].append(sid)

    if go("check_behaviour") is None:
        return
    if b.corrupt is not None:
        s = go("patch_layers")
        if s is None:
            return
        if s.result:
            for comp in ("attn_out", "mlp_out"):
                for layer, v in enumerate(s.result[comp]):
                    if v >= 0.2:
                        add("component", layer, None, v, s.id, component=comp)
        s = go("patch_heads", {"k": max_units})
        if s is None:
            return
        if s.result:
            for t in s.result["top"]:
                if abs(t["value"]) >= 0.1:
                    add("head", t["layer"], t["index"], t["value"], s.id)
    s = go("direct_logit_attribution", {"k": max_units})
    if s is None:
        return
    if s.result:
        total = abs(s.result["logit_diff"]) or 1.0
        for t in s.result["top_heads"]:
            if abs(t["value"]) >= 0.1 * total:
                add("head", t["layer"], t["index"], t["value"] / total, s.id)
        for t in s.result["top_neurons"]:
            if abs(t["value"]) >= 0.05 * total:
                add("neuron", t["layer"], t["index"], t["value"] / total, s.id)
    types = go("head_types")
    if types is None:
        return
    pairs = {(a, w) for a, w in zip(b.answer, b.wrong) if isinstance(a, str)}
    searches = [("neuron_search", "neurons", "neuron")]
    if runner.ctx.sae is not None:
        searches.append(("feature_search", "features", "feature"))
    for tool, key, kind in searches if pairs and len(pairs) <= 4 else []:
        s = go(tool, {"k": 2})
        if s is None:
            return
        if s.result:
            multi = len({a for a, _ in pairs}) > 1
            for f in s.result[key]:
                add(kind, f["layer"], f["index"], 1.0, s.id,
                    prompts=f"answer={f['for']}" if multi else "all",
                    note=f"writes {f['for']!r}")
    type_of = {}
    if types.result:
        for t in types.result["typed"]:
            type_of.setdefault((t["layer"], t["index"]), []).append(
                f"{t['type'].replace('_', '-')} head {t['score']:.2f}")
            add("head", t["layer"], t["index"], 0.1 * t["score"], types.id)
    for key in [k for k in cands if k[4] != "all"]:  # a unit checked on its own prompts
        whole = cands.pop(key[:4] + ("all",), None)  # is not checked again on all of them
        if whole is not None:
            cands[key]["found_by"] += whole["found_by"]
    chosen: list[dict] = []
    for kind in ("component", "head", "neuron", "feature"):
        of_kind = sorted((c for c in cands.values() if c["kind"] == kind),
                         key=lambda c: -c["strength"])
        chosen += of_kind[:max_units]
    for c in chosen:
        s = go("ablate", {"kind": c["kind"], "layer": c["layer"],
                          **({"index": c["index"]} if c["index"] is not None else {}),
                          **({"component": c["component"]} if c["component"] else {}),
                          **({"prompts": c["prompts"]} if c["prompts"] != "all" else {})})
        if s is None:
            return
        if s.result is None:
            inv.notes.append(f"step {s.id}: {s.error}")
            continue
        note = c["note"]
        if c["kind"] == "head" and not note:
            note = ", ".join(type_of.get((c["layer"], c["index"]), []))
        runner.claim(ablation_claim(s, c["found_by"], min_effect, note))
    explained = set()
    for claim in list(inv.claims_list):
        if claim.kind == "neuron" and claim.verified and claim.what == "carries" and \
                (claim.layer, claim.index) not in explained:
            explained.add((claim.layer, claim.index))
            s = go("explain_neuron", {"layer": claim.layer, "index": claim.index})
            if s is None:
                return
            if s.result:
                runner.claim(explanation_claim(s, claim.evidence, min_score))


# ---- the LLM loop -------------------------------------------------------------------------------


def _describe(b) -> str:
    ex = b.prompts[0] if isinstance(b.prompts[0], str) else "(token ids)"
    return (f"Behaviour {b.name!r}: {b.description or 'the model prefers answer over wrong'}. "
            f"{len(b)} prompts, e.g. {ex!r} -> answer {b.answer[0]!r} over {b.wrong[0]!r}; "
            f"{'with' if b.corrupt is not None else 'without'} corrupted twins. The metric is "
            "logit(answer) - logit(wrong) at the last position.")


def _replayed_messages(steps: list[Step]) -> list[dict]:
    """The chat history of earlier steps (for a resumed LLM investigation)."""
    out = []
    for s in steps:
        call_id = f"step{s.id}"
        out.append({"role": "assistant", "content": None, "tool_calls": [{
            "id": call_id, "type": "function",
            "function": {"name": s.tool, "arguments": json.dumps(s.args)}}]})
        out.append({"role": "tool", "tool_call_id": call_id, "content": _tool_answer(s)})
    return out


def _tool_answer(s: Step) -> str:
    if s.error is not None:
        return json.dumps({"error": s.error})
    r = dict(s.result or {})
    for big in ("grid", "heads", "per_prompt"):  # keep what the LLM reads short
        r.pop(big, None)
    text = json.dumps(r, default=str)
    return text if len(text) < 4000 else json.dumps({"summary": r.get("summary", "")})


def run_llm(runner: Runner, llm: Any, *, min_effect: float, min_score: float,
            max_units: int) -> None:
    """Let `llm` (an autointerp `Client`) choose tools until it answers without a tool call,
    the budget is used up, or the endpoint fails (finished steps are kept). Every `ablate` step
    becomes a claim, every `explain_neuron` step an explanation claim."""
    from ..autointerp.errors import AutoInterpError

    inv, b = runner.inv, runner.ctx.behaviour
    tools = [t.schema() for t in TOOLS.values()]
    messages: list[dict] = [{"role": "system", "content": SYSTEM},
                            {"role": "user", "content": _describe(b)}]
    messages += _replayed_messages(inv.steps)
    runner._replay = []  # the LLM goes on from where the history stops
    for s in inv.steps:
        _claim_of(runner, s, min_effect, min_score)
    while True:
        why = runner.over()
        if why:
            inv.stopped = why
            return
        try:
            resp = llm.chat_completion(messages=messages, tools=tools, temperature=0.0)
        except AutoInterpError as err:
            inv.stopped = f"the LLM endpoint failed: {err}"
            return
        usage = getattr(resp, "usage", None)
        inv.llm_tokens += int(getattr(usage, "total_tokens", 0) or 0)
        try:
            msg = resp.choices[0].message
        except (AttributeError, IndexError, TypeError):
            inv.stopped = f"the LLM answer has no message: {str(resp)[:200]!r}"
            return
        calls = list(getattr(msg, "tool_calls", None) or [])
        if not calls:
            inv.notes.append(f"LLM summary: {(msg.content or '').strip()[:2000]}")
            return
        messages.append({"role": "assistant", "content": msg.content, "tool_calls": [
            {"id": c.id, "type": "function",
             "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in calls]})
        for c in calls:
            try:
                args = json.loads(c.function.arguments or "{}")
            except ValueError as err:
                step = Step(len(inv.steps), c.function.name, {"_raw": c.function.arguments[:500]},
                            None, f"The arguments are not valid JSON ({err}); send a JSON "
                            "object.", 0.0, "llm")
                inv.steps.append(step)
                runner.save()
            else:
                step = runner.run(c.function.name, args if isinstance(args, dict) else
                                  {"_raw": args}, by="llm")
            messages.append({"role": "tool", "tool_call_id": c.id, "content": _tool_answer(step)})
            _claim_of(runner, step, min_effect, min_score)
            if runner.over():
                break


def _claim_of(runner: Runner, step: Step, min_effect: float, min_score: float) -> None:
    inv = runner.inv
    if step.result is None:
        return
    found = [s.id for s in inv.steps if s.id < step.id and s.result and
             step.result.get("unit", "") in json.dumps(s.result.get("top", []) or
                                                        s.result.get("top_heads", []))]
    if step.tool == "ablate":
        runner.claim(ablation_claim(step, found, min_effect))
    elif step.tool == "explain_neuron":
        runner.claim(explanation_claim(step, found, min_score))
