"""Explain and score many units: concurrent, capped, cancellable, stored unit by unit.

Each unit's records are split (`split_records`): it is explained from half of its top records and
scored on the rest plus the random ones. A unit's explanation and scores go into the store in one
transaction once both are done, so a failed or cancelled batch keeps every finished unit and
stores nothing of an unfinished one.

Errors: whatever a server answers, a unit ends stored or listed in `BatchResult.failed` with a
one-line reason (the HTTP status, the URL and the start of the body where there was one), and
the batch goes on. Failures that no later unit could escape stop it: authentication (401/403),
an endpoint that cannot be reached, the call cap, a store that cannot be written, and the same
HTTP status or exhausted retries on `max_failures_in_a_row` units in a row (a wrong model name:
404 on every unit). Those are raised, after the finished units are stored, and units in flight
are abandoned. Ctrl-C or setting `cancel` stops the batch too, and `explain_units` returns with
`cancelled=True`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from .client import Budget, make_client
from .errors import GLOBAL_ERRORS, AutoInterpError, Cancelled, RetriesExhaustedError, reason
from .explain import _mode, explain
from .offline import EXPLAINER_NAME
from .records import ActivationRecord, split_records
from .score import score
from .store import AutoInterpStore, Entry


@dataclass
class BatchResult:
    """What a batch did: `done` entries (stored), `failed` {unit: message}, whether it was
    `cancelled`, and the API `calls` it made (retries included)."""

    done: list[Entry] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    cancelled: bool = False
    calls: int = 0

    def __repr__(self) -> str:
        return (f"BatchResult({len(self.done)} done, {len(self.failed)} failed"
                f"{', cancelled' if self.cancelled else ''}, {self.calls} API calls)")


def explain_unit(records: Sequence[ActivationRecord], *, model_id: str, source: str, unit: int,
                 explainer: str | None = None, model: str = "gpt-4o-mini", client: Any = None,
                 base_url: str | None = None, api_key: str | None = None,
                 method: str = "auto", baseline: Sequence[Sequence[str]] | None = None,
                 detection: bool = True, fuzzing: bool = True, explain_fraction: float = 0.5,
                 seed: int = 0, budget: Budget | None = None,
                 cancel: threading.Event | None = None,
                 on_step: Callable[[str], Any] | None = None) -> Entry:
    """Explain one unit from part of its records and score it on the rest -> `Entry` (not
    stored). Arguments as in `explain` and `score`; the simulator matches the explainer.
    baseline: what the offline explainer measures enrichment against; by default the tokens of
    the "random" records (a sample of the corpus), else those of the records shown.
    on_step(name) is called as each step starts ("explain", then `score`'s steps)."""
    kind = _mode("explainer", explainer, client, base_url, api_key)
    llm = make_client(client, model=model, base_url=base_url, api_key=api_key) \
        if kind == "llm" else None
    shown, held = split_records(records, explain_fraction)
    if baseline is None:  # the random contexts' tokens (their activations stay held out)
        baseline = [r.tokens for r in records if r.source == "random"] or None
    if on_step is not None:
        on_step("explain")
    text = explain(shown, explainer=kind, client=llm, baseline=baseline, budget=budget,
                   cancel=cancel)
    scores = score(text, held or shown, simulator=kind, method=method, client=llm,
                   detection=detection, fuzzing=fuzzing, seed=seed, budget=budget,
                   cancel=cancel, on_step=on_step)
    meta: dict[str, Any] = {"n_explain": len(shown), "n_score": len(held or shown)}
    if getattr(text, "cut_from", 0):
        meta["explanation_cut_from"] = text.cut_from
        scores.notes.append(f"explanation: the answer was {text.cut_from} characters, cut to "
                            f"{len(text)} before scoring and storing")
    if llm is not None:
        meta.update(endpoint=llm.base_url, method=method if llm.logprobs is None else
                    ("logprobs" if llm.logprobs else "json"))
    return Entry(model_id, source, int(unit), text.explainer, text.kind, str(text), scores, meta,
                 time.time())


def explain_units(units: Mapping[int, Sequence[ActivationRecord]], *, model_id: str,
                  source: str, store: AutoInterpStore | str | None = None,
                  explainer: str | None = None, model: str = "gpt-4o-mini", client: Any = None,
                  base_url: str | None = None, api_key: str | None = None, method: str = "auto",
                  max_calls: int | None = None, max_concurrency: int | None = None,
                  cancel: threading.Event | None = None, progress: bool = True,
                  on_progress: Callable[[int, int, Entry | None], Any] | None = None,
                  skip_existing: bool = False, max_failures_in_a_row: int = 5,
                  **unit_kwargs: Any) -> BatchResult:
    """Explain and score every unit of `units` ({unit: records}); see the module docstring.

    model_id, source: the studied model and the hook / SAE id, the store's keys. store: an
    `AutoInterpStore` or a path (None: keep results in memory only). max_calls: cap on API calls
    for the whole batch. max_concurrency: units in flight (default: the client's limit; 1
    offline). on_progress(done, total, entry): called after each unit (entry None on failure).
    skip_existing: leave out units the store already has for this explainer.
    max_failures_in_a_row: stop when that many units in a row fail with the same HTTP status or
    with exhausted retries. Other keywords go to `explain_unit`."""
    kind = _mode("explainer", explainer, client, base_url, api_key)
    llm = make_client(client, model=model, base_url=base_url, api_key=api_key,
                      **({"max_concurrency": max_concurrency} if max_concurrency else {})) \
        if kind == "llm" else None
    store = AutoInterpStore(store) if isinstance(store, str) else store
    name = llm.model if llm else EXPLAINER_NAME
    todo = {int(u): list(r) for u, r in units.items()}
    if skip_existing and store is not None:
        have = {e.unit for e in store.entries(model=model_id, source=source, explainer=name)}
        todo = {u: r for u, r in todo.items() if u not in have}
    budget, stop = Budget(max_calls), threading.Event()
    result = BatchResult()
    calls0 = llm.calls if llm else 0
    bar = tqdm(total=len(todo), unit="unit", desc=f"explain {source}", disable=not progress)
    watcher = _forward(cancel, stop)

    def one(u: int) -> Entry:
        if stop.is_set():
            raise Cancelled("The batch was stopped before this unit started.")
        return explain_unit(todo[u], model_id=model_id, source=source, unit=u, explainer=kind,
                            client=llm, method=method, budget=budget, cancel=stop, **unit_kwargs)

    streak: list[Any] = [None, 0]  # (signature, count) of the failures in a row

    def finished(u: int, entry: Entry | None, error: str | None = None) -> None:
        if entry is not None:
            if store is not None:
                store.put(entry)
            result.done.append(entry)
        else:
            result.failed[u] = error or "failed"
        bar.update(1)
        if on_progress is not None:
            on_progress(len(result.done) + len(result.failed), len(todo), entry)

    def repeated(err: BaseException) -> BaseException | None:
        """The error that stops the batch when `err` repeats a streak of failures."""
        sig = _signature(err)
        streak[:] = [sig, streak[1] + 1 if sig is not None and sig == streak[0] else 1]
        if sig is None or streak[1] < max_failures_in_a_row:
            return None
        return type(err)(f"{streak[1]} units in a row failed the same way, so the batch "
                         f"stopped (finished units are kept): {reason(err)}",
                         status=getattr(err, "status", None))

    fatal: BaseException | None = None
    workers = 1 if llm is None else (max_concurrency or llm.max_concurrency)
    pool = ThreadPoolExecutor(max(1, min(workers, len(todo) or 1)))
    try:
        pending = {pool.submit(one, u): u for u in todo}
        while pending:
            done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for f in done:
                u = pending.pop(f)
                err = f.exception()
                if err is None:
                    streak[:] = [None, 0]
                    try:
                        finished(u, f.result())
                    except AutoInterpError as store_err:  # the store refused the entry
                        fatal = fatal or store_err
                        stop.set()
                elif isinstance(err, Cancelled):
                    result.cancelled = True
                elif isinstance(err, GLOBAL_ERRORS):
                    fatal = fatal or err
                    stop.set()
                else:
                    finished(u, None, reason(err))
                    again = repeated(err)
                    if again is not None and fatal is None:
                        fatal = again
                        stop.set()
            if stop.is_set() and fatal is None:
                result.cancelled = True
    except KeyboardInterrupt:
        stop.set()
        result.cancelled = True
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        watcher.set()
        bar.close()
    result.calls = (llm.calls - calls0) if llm else 0
    if fatal is not None:
        raise fatal
    return result


def _signature(err: BaseException) -> tuple[str, int | None] | None:
    """What makes failures "the same" for `max_failures_in_a_row`: an HTTP status that is not
    retried (4xx) or exhausted retries; None for failures of one unit's answer."""
    if isinstance(err, RetriesExhaustedError):
        return ("retries", None)
    status = getattr(err, "status", None)
    if isinstance(err, AutoInterpError) and isinstance(status, int) and 400 <= status < 500:
        return ("status", status)
    return None


def _forward(source: threading.Event | None, target: threading.Event) -> threading.Event:
    """Set `target` when `source` is set (a daemon thread); set the returned event to end it."""
    done = threading.Event()
    if source is None:
        return done

    def watch() -> None:
        while not done.is_set():
            if source.wait(0.05):
                target.set()
                return

    threading.Thread(target=watch, daemon=True).start()
    return done
