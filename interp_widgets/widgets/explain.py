"""ExplainMixin: an "Explain" action for any widget that shows one unit (a neuron, an SAE
feature): explain and score it in a background thread, with progress and cancel, and show the
stored result when the unit is shown again. The JS half is js/src/components/explain.ts.

A widget mixes it in before `BaseWidget` and says which unit it shows and where its records come
from::

    class NeuronView(ExplainMixin, BaseWidget):
        def explain_key(self):      # (model id, hook or SAE id, unit)
            return self._model.name, self.hook, self.neuron
        def explain_records(self):  # top + random ActivationRecords
            return records_from_scan(self._scan(), self.neuron)

Configure it with `view.explain_with(store=..., explainer=..., model=..., base_url=...)`; by
default it explains offline (statistics, labelled so) and keeps results in memory only. The
client, and so the API key, stays in Python: the synced `explain_state` holds the explanation,
the explainer's name, the scores and the progress, never a key.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import traitlets as t

from ..autointerp import ActivationRecord, AutoInterpStore, Cancelled, Entry, explain_unit
from ..autointerp.client import Budget, make_client
from ..autointerp.errors import reason
from ..autointerp.explain import _mode
from ..autointerp.text import display_text
from ._base import request_handler

STEPS = ("explain", "simulate", "detection", "fuzzing")


def sae_source(sae: Any) -> str:
    """The store's `source` for an SAE or dictionary: its Neuronpedia id when it has one, else
    "<hook>/<architecture><width>" (e.g. "blocks.1.hook_resid_pre/topk512")."""
    meta = getattr(sae, "metadata", None)
    np_id = getattr(sae, "neuronpedia_id", None) or (
        meta.get("neuronpedia_id") if isinstance(meta, dict) else None)
    if np_id:
        return str(np_id)
    arch = getattr(sae, "arch", None) or getattr(sae, "kind", None) or "sae"
    return f"{getattr(sae, 'hook_name', None) or 'unknown'}/{arch}{int(sae.d_sae)}"


def entry_state(entry: Entry) -> dict[str, Any]:
    """What the view shows of a stored entry (JSON-safe; NaN scores as None)."""
    return {"status": "done", "explanation": display_text(entry.explanation),
            "kind": entry.kind, "explainer": display_text(entry.explainer),
            "scores": entry.scores.to_dict(), "unit": entry.unit,
            "source": display_text(entry.source), "step": "", "done": len(STEPS),
            "total": len(STEPS), "calls": 0, "error": ""}


class ExplainMixin(t.HasTraits):
    """See the module docstring. Requests: "explain" {} (start), "explain_cancel" {}."""

    #: {"status": "idle"|"running"|"done"|"error"|"cancelled", "step", "done", "total", "calls",
    #:  "explanation", "kind", "explainer", "scores", "unit", "source", "error"}
    explain_state = t.Dict().tag(sync=True)
    #: whether the explainer calls an LLM (the view says "statistical" otherwise)
    explain_llm = t.Bool(False).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        self._explain_settings: dict[str, Any] = {"explainer": "offline"}
        self._explain_client: Any = None
        self._explain_store: AutoInterpStore | None = None
        self._explain_memory: dict[tuple, Entry] = {}
        self._explain_thread: threading.Thread | None = None
        self._explain_running: tuple | None = None
        self._explain_cancel = threading.Event()
        super().__init__(**kwargs)
        self.observe(lambda _: self._explain_refresh(), names="_rev")

    # -- what the widget supplies ----------------------------------------------------------------
    def explain_key(self) -> tuple[str, str, int]:
        """(model id, source: hook name or SAE id, unit) of the unit shown."""
        raise NotImplementedError(f"{type(self).__name__} does not say which unit it shows "
                                  "(define explain_key)")

    def explain_records(self) -> Sequence[ActivationRecord]:
        """The shown unit's activation records (top and random)."""
        raise NotImplementedError(f"{type(self).__name__} has no activation records to explain "
                                  "from (define explain_records)")

    def explain_done(self, entry: Entry) -> None:
        """Called with each stored explanation of this widget's model and source: when
        `explain_with` opens a store, and when a run finishes (from its thread). Override to show
        explanations elsewhere in the widget (e.g. a searchable list)."""

    # -- configuration ---------------------------------------------------------------------------
    def explain_with(self, store: AutoInterpStore | str | None = None, *,
                     explainer: str | None = None, model: str = "gpt-4o-mini",
                     client: Any = None, base_url: str | None = None,
                     api_key: str | None = None, method: str = "auto",
                     max_calls: int | None = 500, **unit_kwargs: Any) -> ExplainMixin:
        """Where results go (`store`: an AutoInterpStore or a path) and who explains: offline,
        or an LLM as in `autointerp.explain` (a client, base_url or api_key selects the LLM).
        max_calls caps one unit's API calls. Returns the widget."""
        kind = _mode("explainer", explainer, client, base_url, api_key)
        self._explain_client = make_client(client, model=model, base_url=base_url,
                                           api_key=api_key) if kind == "llm" else None
        self._explain_store = AutoInterpStore(store) if isinstance(store, str) else store
        self._explain_settings = {"explainer": kind, "method": method, "max_calls": max_calls,
                                  **unit_kwargs}
        self.explain_llm = kind == "llm"
        if self._explain_store is not None:
            model_id, source, _ = self.explain_key()
            for entry in self._explain_store.entries(model=model_id, source=source):
                self.explain_done(entry)
        self._explain_refresh()
        return self

    # -- running ---------------------------------------------------------------------------------
    def explain(self, wait: bool = True) -> Entry | None:
        """Explain and score the shown unit (in a thread; with `wait`, return its entry)."""
        self._explain_start()
        if wait and self._explain_thread is not None:
            self._explain_thread.join()
            key = self.explain_key()
            return self._explain_lookup(key)
        return None

    def explain_cancel(self) -> None:
        """Stop the running explanation; nothing of it is stored."""
        self._explain_cancel.set()

    @request_handler("explain")
    def _explain_start(self) -> dict[str, Any]:
        if self._explain_thread is not None and self._explain_thread.is_alive():
            raise ValueError("an explanation is already running: wait for it or cancel it")
        key = self.explain_key()
        records = list(self.explain_records())
        if not records:
            raise ValueError("no activation records for this unit: give the view a corpus or "
                             "a scan to explain from")
        settings = dict(self._explain_settings)
        budget = Budget(settings.pop("max_calls", None))
        cancel = self._explain_cancel = threading.Event()
        self._explain_running = tuple(key)
        self.explain_state = {"status": "running", "step": STEPS[0], "done": 0,
                              "total": len(STEPS), "calls": 0, "unit": key[2], "source": key[1],
                              "explanation": "", "kind": "", "explainer": "", "scores": {},
                              "error": ""}

        def step(name: str) -> None:
            if self._still_showing(key):
                done = STEPS.index(name) if name in STEPS else len(STEPS)
                self.explain_state = {**self.explain_state, "step": name, "done": done,
                                      "calls": budget.used}

        def work() -> None:
            try:
                entry = explain_unit(records, model_id=key[0], source=key[1], unit=key[2],
                                     client=self._explain_client, budget=budget, cancel=cancel,
                                     on_step=step, **settings)
                if cancel.is_set():
                    raise Cancelled("cancelled")
                self._explain_save(entry)
                self.explain_done(entry)
                state = {**entry_state(entry), "calls": budget.used}
            except Cancelled:
                state = {**self.explain_state, "status": "cancelled",
                         "error": "cancelled: nothing was stored"}
            except Exception as err:  # noqa: BLE001 - whatever happens, the panel says so
                state = {**self.explain_state, "status": "error",
                         "error": display_text(reason(err))}
            if self._still_showing(key):
                self.explain_state = state

        self._explain_thread = threading.Thread(target=work, daemon=True, name="iw-explain")
        self._explain_thread.start()
        return {"started": True}

    @request_handler("explain_cancel")
    def _explain_cancel_request(self) -> dict[str, Any]:
        self.explain_cancel()
        return {}

    # -- results ---------------------------------------------------------------------------------
    def _still_showing(self, key: tuple) -> bool:
        try:
            return tuple(self.explain_key()) == tuple(key)
        except Exception:  # noqa: BLE001 - a view in the middle of switching units
            return False

    def _explain_save(self, entry: Entry) -> None:
        if self._explain_store is not None:
            self._explain_store.put(entry)
        self._explain_memory[(entry.model, entry.source, entry.unit)] = entry

    def _explain_lookup(self, key: tuple) -> Entry | None:
        if self._explain_store is not None:
            found = self._explain_store.get(*key)
            if found is not None:
                return found
        return self._explain_memory.get(tuple(key))

    def _explain_refresh(self) -> None:
        """Show the stored explanation of the unit now shown (or nothing)."""
        try:
            key = tuple(self.explain_key())
        except NotImplementedError:
            return
        running = self._explain_thread is not None and self._explain_thread.is_alive()
        if running and key == self._explain_running:
            return
        entry = self._explain_lookup(key)
        self.explain_state = entry_state(entry) if entry is not None else {
            "status": "idle", "unit": key[2], "source": key[1]}
