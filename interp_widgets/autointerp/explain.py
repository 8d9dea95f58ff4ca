"""explain and simulate: an LLM through `Client` (prompts in `prompts.py`) or the offline
statistics (`offline.py`).

Which one runs: `explainer` / `simulator` = "llm" or "offline"; when left None, "llm" if a
client, base_url or api_key is passed, else "offline". Environment variables alone never switch
to the network, so the same call gives the same answer on every machine.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from . import prompts
from .client import Budget, Client, as_floats, first_json, make_client, wants_llm
from .errors import AutoInterpError, EndpointNotFoundError, ResponseParseError, one_line
from .offline import EXPLAINER_NAME, STATISTICAL_LABEL, explain_offline, simulate_offline
from .records import ActivationRecord, _check_records
from .text import normalize_explanation

_NUMBERS = {str(i): i for i in range(11)}


class Explanation(str):
    """An explanation's text, with `explainer` (the LLM's name or "offline-statistical"),
    `kind` ("llm" or "statistical") and `cut_from`: the length of the answer when it was longer
    than `text.MAX_EXPLANATION_CHARS` and cut (else 0)."""

    explainer: str
    kind: str
    cut_from: int

    def __new__(cls, text: str, explainer: str, kind: str, cut_from: int = 0) -> Explanation:
        obj = super().__new__(cls, text)
        obj.explainer, obj.kind, obj.cut_from = explainer, kind, int(cut_from)
        return obj

    def __reduce__(self):
        return (Explanation, (str(self), self.explainer, self.kind, self.cut_from))


def _mode(name: str, value: str | None, client: Any, base_url: Any, api_key: Any) -> str:
    if value is None:
        return "llm" if wants_llm(client, base_url, api_key) else "offline"
    if value not in ("llm", "offline"):
        raise ValueError(f"{name} must be 'llm' or 'offline' (or None to choose from whether a "
                         f"client/base_url/api_key is given); got {value!r}.")
    return value


def explain(records: Sequence[ActivationRecord] | ActivationRecord, *, model: str = "gpt-4o-mini",
            client: Client | Any = None, base_url: str | None = None, api_key: str | None = None,
            explainer: str | None = None, baseline: Sequence[Sequence[str]] | None = None,
            budget: Budget | None = None, cancel: threading.Event | None = None) -> Explanation:
    """Explain a unit from its activation records, in one sentence.

    explainer="llm": OpenAI's method (the prompt is in `interp_widgets.autointerp.prompts`)
    through the `openai` client (`model`, `base_url`, `api_key`, or `client`: a `Client` or an
    `openai.OpenAI`). explainer="offline": token and n-gram enrichment against `baseline` (token
    lists; default: the records' own tokens), labelled as statistical."""
    records = _check_records(records)
    if _mode("explainer", explainer, client, base_url, api_key) == "offline":
        return Explanation(explain_offline(records, baseline=baseline), EXPLAINER_NAME,
                           "statistical")
    llm = make_client(client, model=model, base_url=base_url, api_key=api_key)
    answer = llm.chat(prompts.explain_messages(records), max_tokens=120, budget=budget,
                      cancel=cancel)
    text, cut_from = normalize_explanation(prompts.clean_explanation(answer))
    if not text:
        raise ResponseParseError(f"Model {llm.model!r} at {llm.where('/chat/completions')} "
                                 f"returned an empty explanation (answer {answer[:80]!r}).")
    return Explanation(text, llm.model, "llm", cut_from)


def simulate(explanation: str, records: Sequence[ActivationRecord] | ActivationRecord, *,
             simulator: str | None = None, method: str = "auto", model: str = "gpt-4o-mini",
             client: Client | Any = None, base_url: str | None = None,
             api_key: str | None = None, budget: Budget | None = None,
             cancel: threading.Event | None = None) -> list[list[float]]:
    """Predicted activations, 0-10, [record][pos], of a unit described by `explanation`.

    simulator="llm", method: "logprobs" (expected value over "0".."10" from `/v1/completions`
    logprobs, one call per record), "json" (chat at temperature 0, JSON predictions) or "auto"
    (logprobs when the endpoint gives them, else JSON; the client remembers which).
    simulator="offline": `offline.simulate_offline`."""
    records = _check_records(records)
    text = str(explanation)
    if method not in ("auto", "logprobs", "json"):
        raise ValueError(f"method must be 'auto', 'logprobs' or 'json'; got {method!r}.")
    if _mode("simulator", simulator, client, base_url, api_key) == "offline":
        return simulate_offline(text, records)
    llm = make_client(client, model=model, base_url=base_url, api_key=api_key)
    if text.startswith(STATISTICAL_LABEL):
        text = text[len(STATISTICAL_LABEL):].strip()
    use_logprobs = method == "logprobs" or (method == "auto" and llm.logprobs is not False)
    if use_logprobs and (method == "logprobs" or llm.logprobs):
        return llm.map(lambda r: _simulate_logprobs(llm, text, r, budget, cancel), records,
                       cancel)
    if use_logprobs:  # "auto", untried: one record decides, once for this client
        try:
            first = [_simulate_logprobs(llm, text, records[0], budget, cancel)]
        except AutoInterpError as err:
            if not _no_logprobs(err):
                raise
            llm.logprobs = False
        else:
            llm.logprobs = True
            return first + llm.map(lambda r: _simulate_logprobs(llm, text, r, budget, cancel),
                                   records[1:], cancel)
    return llm.map(lambda r: _simulate_json(llm, text, r, budget, cancel), records, cancel)


def _no_logprobs(err: Exception) -> bool:
    """Whether `err` says the endpoint cannot give completion logprobs (so JSON should be tried)."""
    if isinstance(err, (EndpointNotFoundError, ResponseParseError)):
        return True
    return getattr(err, "status", None) in (400, 422, 501)


def _simulate_logprobs(llm: Client, explanation: str, record: ActivationRecord,
                       budget: Budget | None, cancel: threading.Event | None) -> list[float]:
    prompt, offsets = prompts.simulation_prompt(explanation, record.tokens)
    lp = llm.completion_logprobs(prompt, budget=budget, cancel=cancel)
    where = llm.where("/completions")
    starts = getattr(lp, "text_offset", None)
    tops = getattr(lp, "top_logprobs", None)
    if not isinstance(starts, list) or not isinstance(tops, list) or not starts \
            or len(starts) != len(tops):
        raise ResponseParseError(f"The completion from {where} for model {llm.model!r} has no "
                                 "echoed logprobs (tokens, text_offset, top_logprobs).")
    index = {s: i for i, s in enumerate(starts) if isinstance(s, int)}
    out = []
    for off in offsets:
        i = index.get(off)
        if i is None:
            raise ResponseParseError(
                f"The echoed logprobs from {where} have no token starting at character {off} "
                "(an 'unknown' placeholder): the endpoint did not echo the prompt.")
        top = tops[i] or {}
        if not isinstance(top, dict):
            raise ResponseParseError(f"The echoed logprobs from {where} hold a "
                                     f"{type(top).__name__} where a top-logprobs dict belongs.")
        out.append(expected_value(top))
    return out


def expected_value(top: dict[str, float]) -> float:
    """Expected activation over the numeric tokens "0".."10" of a top-logprobs dict (0 when it
    holds none), their probabilities renormalised. Entries that are not finite numbers are
    left out; log-probabilities above 0 count as 0."""
    import math

    probs: dict[int, float] = {}
    for tok, logprob in dict(top).items():
        v = _NUMBERS.get(str(tok).strip())
        if v is None or isinstance(logprob, bool) or not isinstance(logprob, (int, float)) \
                or not math.isfinite(logprob):
            continue
        probs[v] = probs.get(v, 0.0) + math.exp(min(float(logprob), 0.0))
    total = sum(probs.values())
    return sum(v * p for v, p in probs.items()) / total if total > 0 else 0.0


def _simulate_json(llm: Client, explanation: str, record: ActivationRecord,
                   budget: Budget | None, cancel: threading.Event | None) -> list[float]:
    answer = llm.chat(prompts.simulation_json_messages(explanation, record.tokens),
                      max_tokens=16 + 4 * len(record.tokens), budget=budget, cancel=cancel)
    try:
        data = first_json(answer)
        values = data.get("activations") if isinstance(data, dict) else data
        return as_floats(values, len(record.tokens), 0.0, 10.0)
    except (ValueError, AttributeError, TypeError) as err:
        failure = ResponseParseError(llm.redact(one_line(
            f"Could not read simulated activations from model {llm.model!r} at "
            f"{llm.where('/chat/completions')}: {err}. Expected {{\"activations\": "
            f"[{len(record.tokens)} integers 0-10]}}; got {answer[:120]!r}"
            f"{'...' if len(answer) > 120 else ''}.")))
    raise failure
