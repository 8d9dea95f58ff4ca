"""Investigations: run tools on a behaviour, record every step, turn findings into claims, verify
each claim by an intervention, and write the case study up.

    inv = iw.investigate(model, iw.Behaviour.ioi(model))          # the offline plan
    inv = iw.investigate(model, b, llm=iw.autointerp.Client(...))  # an LLM picks the tools
    inv.claims          # DataFrame: kind, layer, index, position, effect, spread, verified, ...
    inv.report("report.ipynb"); inv.to_html("report.html"); inv.save("inv.json")

A claim "unit U carries this much of the metric" is verified when knocking U out
(`interventions.unit_effect`) lowers the metric by more than twice the bootstrap standard error
of that drop (over prompts) and by at least `min_effect` of the clean metric; otherwise it is
kept and marked refuted. A claim "unit U means this" (an explanation) is verified when the lower
end of its simulation score's 95% interval is above `min_score`.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..model import Model
from .behaviour import Behaviour
from .tools import TOOLS, Context, ToolError, call_tool

FORMAT = "interp_widgets.investigation"
VERSION = 1


@dataclass
class Budget:
    """Caps on an investigation: tool calls, LLM tokens (prompt + completion, as the endpoint
    reports them) and wall-clock seconds. None: no cap."""

    max_calls: int | None = 40
    max_tokens: int | None = 200_000
    max_seconds: float | None = 600.0

    def exceeded(self, calls: int, tokens: int, seconds: float) -> str | None:
        """Why the budget is used up, or None."""
        if self.max_calls is not None and calls >= self.max_calls:
            return f"the budget of {self.max_calls} tool calls is used up"
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return f"the budget of {self.max_tokens:,} LLM tokens is used up"
        if self.max_seconds is not None and seconds >= self.max_seconds:
            return f"the budget of {self.max_seconds:.0f} s is used up"
        return None


@dataclass
class Step:
    """One tool call: id, tool, args, result (JSON-safe numbers and a summary) or error,
    seconds it took, and who chose it ("plan" or "llm")."""

    id: int
    tool: str
    args: dict
    result: dict | None
    error: str | None
    seconds: float
    by: str = "plan"


@dataclass
class Claim:
    """kind: "head" | "neuron" | "feature" | "component"; what: "carries" (a share of the
    metric) or "means" (an explanation); effect: the verifying intervention's mean drop of the
    metric (or the explanation's score); low/high: its 95% interval; spread: its bootstrap
    standard error; verified: whether the check passed (refuted claims are kept); evidence: the
    ids of the steps that found and checked it."""

    kind: str
    layer: int
    index: int | None
    position: int | None
    effect: float
    spread: float
    verified: bool
    statement: str
    evidence: list[int]
    what: str = "carries"
    component: str | None = None
    low: float = math.nan
    high: float = math.nan
    fraction: float = math.nan


@dataclass
class Investigation:
    """What an investigation did and found (see the module docstring)."""

    model_name: str
    behaviour: Behaviour
    steps: list[Step] = field(default_factory=list)
    claims_list: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stopped: str | None = None  # why it ended early, if it did
    llm_tokens: int = 0

    @property
    def claims(self) -> pd.DataFrame:
        """One row per claim (columns as `Claim`)."""
        cols = [f for f in Claim.__dataclass_fields__]
        return pd.DataFrame([asdict(c) for c in self.claims_list], columns=cols)

    def step(self, sid: int) -> Step:
        return next(s for s in self.steps if s.id == sid)

    # ---- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        b = self.behaviour
        return _finite({"format": FORMAT, "version": VERSION, "model": self.model_name,
                "behaviour": behaviour_to_dict(b), "steps": [asdict(s) for s in self.steps],
                "claims": [asdict(c) for c in self.claims_list], "notes": self.notes,
                "stopped": self.stopped, "llm_tokens": self.llm_tokens})

    def save(self, path: str | Path) -> Path:
        """Write the investigation as JSON (atomically)."""
        from ..interchange._files import write_bytes

        path = Path(path)
        text = json.dumps(self.to_dict(), indent=1, default=_json_default, allow_nan=False)
        write_bytes(path, text.encode())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Investigation:
        """Read an investigation written by `save`."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a readable investigation file ({err}).") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{path}: not an investigation file (no format {FORMAT!r}).")
        if d.get("version") != VERSION:
            raise ValueError(f"{path}: investigation version {d.get('version')!r} is unknown; "
                             f"this interp_widgets reads version {VERSION}.")
        inv = cls(d["model"], behaviour_from_dict(d["behaviour"]),
                  [Step(**s) for s in d["steps"]], [_claim(c) for c in d["claims"]],
                  d.get("notes", []), d.get("stopped"), d.get("llm_tokens", 0))
        return inv

    def report(self, path: str | Path) -> Path:
        """A notebook (nbformat) that re-runs the evidence of every claim and embeds views."""
        from .report import write_notebook

        return write_notebook(self, Path(path))

    def to_html(self, path: str | Path) -> Path:
        """A static, self-contained HTML report: behaviour, claims, steps."""
        from .report import write_html

        return write_html(self, Path(path))

    def __repr__(self) -> str:
        v = sum(c.verified for c in self.claims_list)
        return (f"Investigation({self.behaviour.name!r}: {len(self.steps)} steps, "
                f"{len(self.claims_list)} claims, {v} verified"
                + (f", stopped: {self.stopped}" if self.stopped else "") + ")")


def _finite(x: Any) -> Any:
    """`x` with every NaN float replaced by None (strict JSON)."""
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _claim(d: dict) -> Claim:
    for k in ("effect", "spread", "low", "high", "fraction"):
        if d.get(k) is None:
            d[k] = math.nan
    return Claim(**d)


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON-serialisable")


def behaviour_to_dict(b: Behaviour) -> dict:
    def prompt(p):
        return p if isinstance(p, str) else {"ids": [int(t) for t in p.reshape(-1)]}
    return {"name": b.name, "description": b.description, "prompts": [prompt(p) for p in b.prompts],
            "answer": list(b.answer), "wrong": list(b.wrong),
            "corrupt": None if b.corrupt is None else [prompt(p) for p in b.corrupt],
            "known": b.known}


def behaviour_from_dict(d: dict) -> Behaviour:
    import torch

    def prompt(p):
        return p if isinstance(p, str) else torch.tensor(p["ids"], dtype=torch.long)
    return Behaviour([prompt(p) for p in d["prompts"]], d["answer"], d["wrong"],
                     None if d["corrupt"] is None else [prompt(p) for p in d["corrupt"]],
                     name=d["name"], description=d.get("description", ""),
                     known=d.get("known", {}))


# ---- running ------------------------------------------------------------------------------------


class Runner:
    """Runs tools for one investigation: records steps, enforces the budget, saves after every
    step when a path is given, and replays recorded steps when resuming."""

    def __init__(self, inv: Investigation, ctx: Context, budget: Budget, path: Path | None,
                 on_step: Callable[[Step], None] | None = None,
                 on_claim: Callable[[Claim], None] | None = None):
        self.inv, self.ctx, self.budget, self.path = inv, ctx, budget, path
        self.on_step, self.on_claim = on_step, on_claim
        self.t0 = time.monotonic() - sum(s.seconds for s in inv.steps)
        self._replay = list(inv.steps)  # steps from an earlier run, taken in order
        self.cancel = False

    def over(self) -> str | None:
        if self.cancel:
            return "stopped by the user"
        return self.budget.exceeded(len(self.inv.steps) - len(self._replay), self.inv.llm_tokens,
                                    time.monotonic() - self.t0)

    def run(self, tool: str, args: dict | None = None, by: str = "plan") -> Step:
        """The step of `tool(args)`: replayed if an earlier run recorded it, else run now."""
        args = dict(args or {})
        if self._replay:
            old = self._replay[0]
            if old.tool == tool and old.args == args:
                self._replay.pop(0)
                return old
            self.inv.steps = self.inv.steps[: self.inv.steps.index(old)]
            self._replay = []
        t = time.monotonic()
        result, error = None, None
        try:
            result = call_tool(self.ctx, tool, args)
        except ToolError as err:
            error = str(err)
        step = Step(len(self.inv.steps), tool, args, result, error,
                    round(time.monotonic() - t, 3), by)
        self.inv.steps.append(step)
        self.save()
        if self.on_step is not None:
            self.on_step(step)
        return step

    def claim(self, claim: Claim) -> None:
        """Record a claim (and tell `on_claim`)."""
        self.inv.claims_list.append(claim)
        if self.on_claim is not None:
            self.on_claim(claim)

    def save(self) -> None:
        if self.path is not None:
            self.inv.save(self.path)


def investigate(model: Model, behaviour: Behaviour, *, llm: Any = None,
                budget: Budget | None = None, path: str | Path | None = None, sae: Any = None,
                corpus: list[str] | None = None, only_correct: bool = False,
                min_effect: float = 0.05, min_score: float = 0.3, max_units: int = 8,
                on_step: Callable[[Step], None] | None = None,
                on_claim: Callable[[Claim], None] | None = None,
                runner: Callable[[Runner], None] | None = None) -> Investigation:
    """Investigate `behaviour` on `model` (see the module docstring).

    llm: an `iw.autointerp.Client` (any OpenAI-compatible endpoint with tool calling) to let a
    model choose the tools; None runs the fixed offline plan (`plan.run_plan`). budget: caps on
    calls, tokens and seconds. path: a JSON file saved after every step; an investigation started
    again with the same path and behaviour resumes from it. only_correct: when the model fails
    the behaviour on average, go on with the prompts it gets right instead of stopping.
    min_effect: the least share of the clean metric a verified "carries" claim must remove.
    on_step, on_claim: called with each step / claim as it comes (a view shows them live);
    runner: called with the `Runner` before the first step (its `cancel` stops the run)."""
    from .plan import run_llm, run_plan

    budget = budget or Budget()
    path = None if path is None else Path(path)
    inv = None
    if path is not None and path.exists():
        inv = Investigation.load(path)
        if inv.model_name != model.name or behaviour_to_dict(inv.behaviour) != \
                behaviour_to_dict(behaviour):
            raise ValueError(f"{path} holds an investigation of another model or behaviour "
                             f"({inv.model_name!r}, {inv.behaviour.name!r}); give a new path.")
        inv.claims_list, inv.stopped = [], None  # rebuilt from the steps
    status = behaviour.check(model)
    if status["mean"] <= 0:
        msg = (f"The model fails this behaviour: mean metric {status['mean']:.3f} over "
               f"{status['n']} prompts, right on {status['fraction_right']:.0%}.")
        if not only_correct:
            raise ValueError(msg + " Pass only_correct=True to investigate the prompts it gets "
                             "right, or choose another behaviour.")
        right = [i for i, v in enumerate(behaviour.values(model).tolist()) if v > 0]
        if not right:
            raise ValueError(msg + " It gets none of them right.")
        warnings.warn(msg + f" Going on with the {len(right)} prompts it gets right.",
                      stacklevel=2)
        behaviour = behaviour.subset(right)
    if inv is None:
        inv = Investigation(model.name, behaviour)
    ctx = Context(model, behaviour, sae=sae, corpus=corpus)
    run = Runner(inv, ctx, budget, path, on_step, on_claim)
    if runner is not None:
        runner(run)
    settings = {"min_effect": min_effect, "min_score": min_score, "max_units": max_units}
    if llm is None:
        run_plan(run, **settings)
    else:
        run_llm(run, llm, **settings)
    if run.cancel and not inv.stopped:
        inv.stopped = "stopped by the user"
    run.save()
    return inv


__all__ = ["Budget", "Claim", "Investigation", "Step", "TOOLS", "investigate"]
