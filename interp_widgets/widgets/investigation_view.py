"""InvestigationView: an investigation's steps as they run, each with its numbers drawn inline
and collapsible, the claims panel updating as verifications come in, and a stop button that
ends the run keeping what is done (js/src/widgets/investigation.ts).

    view = iw.InvestigationView(inv)                           # a finished investigation
    view = iw.InvestigationView.start(model, behaviour)        # runs in the background
    view.wait(); view.investigation.claims
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import asdict
from typing import Any

import numpy as np
import traitlets as t

from ..investigate.investigation import Claim, Investigation, Step, investigate
from ._base import BaseWidget, request_handler
from ._codec import encode_array

_GRIDS = {"patch_heads": "grid", "direct_logit_attribution": "heads"}


def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and math.isnan(x) else x


def step_payload(step: Step) -> dict[str, Any]:
    """One step for the view: id, tool, args (JSON text), by, seconds, summary or error, and the
    numbers it draws (a [layer, head] grid, per-layer bars, or an interval)."""
    out: dict[str, Any] = {"id": step.id, "tool": step.tool, "args": json.dumps(step.args),
                           "by": step.by, "seconds": step.seconds, "error": step.error,
                           "summary": (step.result or {}).get("summary", "")}
    r = step.result or {}
    key = _GRIDS.get(step.tool)
    if key and key in r:
        out["grid"] = encode_array(np.asarray(r[key], np.float32))
        out["grid_label"] = ("restored (0 corrupt, 1 clean)" if step.tool == "patch_heads"
                             else "direct effect on the metric")
    if step.tool == "head_types":
        out["grid"] = encode_array(np.maximum.reduce(
            [np.asarray(r[k], np.float32) for k in ("previous_token", "induction",
                                                     "duplicate_token")]))
        out["grid_label"] = "best head-type score"
    if step.tool == "patch_layers":
        out["bars"] = {k: encode_array(np.asarray(r[k], np.float32)) for k in ("attn_out",
                                                                               "mlp_out")}
    if step.tool == "ablate":
        out["interval"] = {k: _finite(r[k]) for k in ("effect", "low", "high", "clean_mean")}
    return out


def claim_payload(claim: Claim) -> dict[str, Any]:
    return {k: _finite(v) for k, v in asdict(claim).items()}


class InvestigationView(BaseWidget):
    """See the module docstring. `running` is True while a background investigation runs;
    `status` says how it ended."""

    _view = t.Unicode("investigation").tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    steps = t.List(t.Dict()).tag(sync=True)
    claims = t.List(t.Dict()).tag(sync=True)
    running = t.Bool(False).tag(sync=True)
    status = t.Unicode("").tag(sync=True)

    def __init__(self, investigation: Investigation | None = None, *, title: str = "") -> None:
        super().__init__(title=title)
        self._inv = investigation
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._error: BaseException | None = None
        if investigation is not None:
            self._show(investigation)

    def _show(self, inv: Investigation) -> None:
        self.title = self.title or f"Investigation: {inv.behaviour.name}"
        self.steps = [step_payload(s) for s in inv.steps]
        self.claims = [claim_payload(c) for c in inv.claims_list]
        v = sum(c.verified for c in inv.claims_list)
        self.status = (f"{len(inv.steps)} steps, {v} of {len(inv.claims_list)} claims verified"
                       + (f"; stopped: {inv.stopped}" if inv.stopped else ""))

    @classmethod
    def start(cls, model: Any, behaviour: Any, *, title: str = "", **kwargs: Any
              ) -> InvestigationView:
        """Run `iw.investigate(model, behaviour, **kwargs)` in a background thread; steps and
        claims appear in the view as they come. The run uses the model's hooks: do not run the
        same model in other cells until it ends (`wait()`, or the stop button)."""
        view = cls(title=title or f"Investigation: {behaviour.name}")
        view.running, view.status = True, "running"

        def grab(runner: Any) -> None:
            view._runner = runner

        def work() -> None:
            try:
                inv = investigate(model, behaviour, runner=grab,
                                  on_step=lambda s: view._add("steps", step_payload(s)),
                                  on_claim=lambda c: view._add("claims", claim_payload(c)),
                                  **kwargs)
                view._inv = inv
                view._show(inv)
            except BaseException as err:  # noqa: BLE001 - the view must leave "running"
                view._error = err
                view.status = f"failed: {type(err).__name__}: {err}"
            finally:
                view.running = False

        view._thread = threading.Thread(target=work, daemon=True, name="iw-investigate")
        view._thread.start()
        return view

    def _add(self, trait: str, item: dict) -> None:
        setattr(self, trait, [*getattr(self, trait), item])

    def wait(self, timeout: float | None = None) -> Investigation | None:
        """Block until the background investigation ends; its error is raised here."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self._inv

    @request_handler("stop")
    def stop(self) -> dict[str, Any]:
        """End a running investigation after the current step (what is done is kept)."""
        if self._runner is None or not self.running:
            return {"stopped": False}
        self._runner.cancel = True
        return {"stopped": True}

    @property
    def investigation(self) -> Investigation | None:
        return self._inv

    @property
    def data(self) -> Investigation | None:
        """The `Investigation` shown (None until a background run ends)."""
        return self._inv
