"""The LLM path against a hostile OpenAI-compatible server on 127.0.0.1 (`openai_server.HOSTILE`:
30 ways of answering badly): every unit ends stored whole or failed with a one-line reason, no
thread dies, nothing raises from inside the batch, and the units that got good answers score as
in a clean run. Also: global failures stop a batch, exception chains never hold the API key, and
`first_json` stays linear."""

from __future__ import annotations

import json
import math
import random
import sys
import threading
import time
import traceback

import pytest
from openai_server import HOSTILE, FakeOpenAIServer

from interp_widgets import autointerp as ai
from interp_widgets.autointerp.client import MAX_JSON_DEPTH, first_json
from interp_widgets.autointerp.text import (
    MAX_EXPLANATION_CHARS,
    display_text,
    normalize_explanation,
)

KEY = "sk-hostile-5e6f7a8b9c0d1e2f"
LLM = "fake-llm"
WORDS = [" the", " cat", " apple", " sat", " on", " mat", " dog", " rain", " song", " pie"]


def _units(n: int, seed: int = 0) -> dict[int, list[ai.ActivationRecord]]:
    """Unit u fires on WORDS[u % 10]; every record starts with the token "unit<u>x", which the
    server's `plan` keys on."""
    rng = random.Random(seed)
    out = {}
    for u in range(n):
        target = WORDS[u % len(WORDS)]
        recs = []
        for i in range(6):
            toks = [rng.choice(WORDS) for _ in range(6)]
            if i < 4:
                toks[rng.randrange(6)] = target
            else:
                toks = [t if t != target else " of" for t in toks]
            acts = [3.0 + rng.random() if t == target else 0.0 for t in toks]
            recs.append(ai.ActivationRecord([f" unit{u}x"] + toks, [0.0] + acts,
                                            source="top" if i < 4 else "random"))
        out[u] = recs
    return out


def _client(server: FakeOpenAIServer, **kw) -> ai.Client:
    kw = {"backoff": 0.01, "max_backoff": 0.05, "timeout": 0.6, "max_retries": 3,
          "max_concurrency": 8, **kw}
    return ai.Client(LLM, base_url=server.base_url, api_key=KEY, **kw)


def _run(units, store, server, **kw) -> ai.BatchResult:
    return ai.explain_units(units, model_id="demo", source="h", store=store,
                            client=_client(server), method=kw.pop("method", "json"),
                            progress=False, **kw)


def _scores(entry: ai.Entry) -> dict:
    return {**entry.scores.to_dict(), "explanation": entry.explanation}


@pytest.fixture
def thread_errors():
    """Exceptions that killed any thread while the test ran."""
    seen: list[str] = []
    old = threading.excepthook
    threading.excepthook = lambda args: seen.append(f"{args.exc_type.__name__}: "
                                                    f"{args.exc_value}")
    yield seen
    threading.excepthook = old


def _batch_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor")}


@pytest.mark.parametrize("n_units", [pytest.param(200, id="200-units"),
                                     pytest.param(600, id="600-units", marks=pytest.mark.slow)])
def test_every_hostile_answer_ends_stored_or_failed(tmp_path, thread_errors, n_units):
    units = _units(n_units)
    with FakeOpenAIServer(api_key=KEY) as clean_server:
        clean = _run(units, None, clean_server)
    assert not clean.failed and len(clean.done) == n_units
    want = {e.unit: _scores(e) for e in clean.done}
    assert all(not math.isnan(s["correlation"] or math.nan) for s in want.values())

    rng = random.Random(19)
    modes = sorted(HOSTILE)
    assert len(modes) == 30
    hostile_units = rng.sample(range(n_units), 4 * len(modes))  # each way 4 times
    store = ai.AutoInterpStore(tmp_path / "hostile.sqlite")
    before = _batch_threads()
    t0 = time.perf_counter()
    with FakeOpenAIServer(api_key=KEY) as server:
        server.hang = 1.2  # twice the client's timeout
        server.plan = {u: (modes[i % len(modes)], rng.randrange(4))
                       for i, u in enumerate(hostile_units)}
        out = _run(units, store, server)  # returns: nothing raised from inside the batch
        served = dict(server.served)
    elapsed = time.perf_counter() - t0
    time.sleep(0.2)
    assert not thread_errors
    assert _batch_threads() <= before  # every worker thread ended
    assert set(served.values()) == set(modes)  # all 30 ways were answered
    assert len(served) == len(hostile_units)

    done = {e.unit for e in out.done}
    assert done.isdisjoint(out.failed) and done | set(out.failed) == set(units)
    assert not out.cancelled
    for u, why in out.failed.items():
        assert u in served, f"unit {u} got only good answers but failed: {why}"
        assert why and "\n" not in why and len(why) <= 500
        assert "/v1/" in why or "HTTP" in why, why  # says where (and the status when there was
        assert KEY not in why  # one)
    # stored: exactly the finished units, each whole
    stored = {e.unit: e for e in store.entries()}
    assert set(stored) == done
    for e in stored.values():
        assert e.explanation and e.scores.n_records > 0 and e.scores.simulator == f"llm:{LLM}"
        assert len(e.explanation) <= MAX_EXPLANATION_CHARS
        assert "\ud800" not in e.explanation and "\u202e" not in e.explanation
    # the units that only got good answers score exactly as in the clean run; so do those
    # whose bad answer was retried away (statuses 429/5xx, hangs, resets, cut bodies)
    good = [u for u in units if u not in served]
    assert len(good) == n_units - len(hostile_units)
    for u in good:
        assert _scores(stored[u]) == want[u], u
    retried = {"429", "500", "502-html", "503", "hang", "reset", "truncated", "chunked-garbage",
               "slow"}
    for u, mode in served.items():
        if mode in retried:
            assert u in stored and _scores(stored[u]) == want[u], (u, mode)
    # a huge explanation is cut and the cut noted
    huge = [stored[u] for u, m in served.items() if m == "content-huge" and u in stored]
    for e in huge:
        assert e.explanation.endswith("[…]") and e.meta["explanation_cut_from"] > 1e6
    print(f"\n{n_units} units, {len(hostile_units)} hostile: {len(done)} stored, "
          f"{len(out.failed)} failed, {out.calls} calls, {elapsed:.1f} s")


def test_hostile_answers_on_the_logprob_path(tmp_path, thread_errors):
    units = _units(30, seed=1)
    with FakeOpenAIServer(api_key=KEY) as server:
        server.plan = {u: (mode, 1) for u, mode in enumerate(sorted(HOSTILE))}  # 2nd request:
        out = _run(units, None, server, method="logprobs")  # the first simulation call
    assert not thread_errors
    assert set(out.failed) | {e.unit for e in out.done} == set(units)
    assert out.failed and all("/v1/" in why or "HTTP" in why for why in out.failed.values())


def test_explain_and_simulate_raise_only_autointerp_errors():
    """Each hostile answer to one call is an AutoInterpError (one line, with the URL), or a
    good result: never a RecursionError, AttributeError, UnicodeError or JSON error."""
    recs = _units(1)[0]
    with FakeOpenAIServer(api_key=KEY) as server:
        client = _client(server, max_retries=1)
        for mode in sorted(HOSTILE):
            for call in ("explain", "simulate"):
                server.hostile(mode)
                try:
                    if call == "explain":
                        text = ai.explain(recs[:2], client=client)
                        assert text == normalize_explanation(text)[0], (mode, text)
                    else:
                        ai.simulate("the token \" cat\"", recs[:1], client=client,
                                    method="json")
                except ai.AutoInterpError as err:
                    msg = str(err)
                    assert "\n" not in msg and "/v1/chat/completions" in msg, (mode, msg)
                    assert err.__cause__ is None and err.__context__ is None, mode
                server._hostile.clear()


def _chain(err: BaseException) -> list[BaseException]:
    seen, todo = [], [err]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__]
    return seen


def test_401_chain_never_holds_the_key(tmp_path):
    wrong = "sk-wrong-key-1234567890abcdef"
    with FakeOpenAIServer(api_key=KEY) as server:
        server.fail(500, 1)  # a retried error first, then the 401
        c = ai.Client(LLM, base_url=server.base_url, api_key=wrong, backoff=0.01,
                      max_concurrency=1)
        with pytest.raises(ai.AuthenticationError) as info:
            ai.explain_units(_units(3), model_id="demo", source="h", client=c, progress=False,
                             store=str(tmp_path / "s.sqlite"))
    err = info.value
    # stopped at the first 401 (it is global): 500, 401, and at most the next unit's request
    assert 2 <= len(server.requests) <= 3
    chain = _chain(err)
    assert chain == [err]  # raised outside the except block: nothing chained
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    for e in chain:
        for part in (str(e), repr(e), repr(e.args), repr(vars(e)), text):
            assert wrong not in part and KEY not in part
    assert "401" in str(err) and "/v1/chat/completions" in str(err)


def test_a_key_echoed_by_the_server_is_redacted():
    secret = "sk-echoed-0a9b8c7d6e5f"
    with FakeOpenAIServer() as server:
        c = ai.Client(LLM, base_url=server.base_url, api_key=secret, backoff=0.01)
        orig = HOSTILE["400"]
        HOSTILE["echo"] = lambda srv, h, body: srv._send(
            h, 400, {"error": {"message": f"bad key {secret} for this model"}})
        try:
            server.hostile("echo")
            with pytest.raises(ai.AutoInterpError) as info:
                ai.explain(_units(1)[0][:2], client=c)
        finally:
            del HOSTILE["echo"]
        assert HOSTILE["400"] is orig
    assert secret not in str(info.value) and "***" in str(info.value)


def test_unreachable_endpoint_stops_the_batch():
    with FakeOpenAIServer() as server:
        url = server.base_url  # the port is closed once the server stops
    c = ai.Client(LLM, base_url=url, api_key=KEY, backoff=0.01, max_retries=1, timeout=1.0)
    t0 = time.perf_counter()
    with pytest.raises(ai.EndpointUnreachableError, match="kept failing.*ConnectError"):
        ai.explain_units(_units(20), model_id="demo", source="h", client=c, progress=False)
    assert time.perf_counter() - t0 < 10


def test_the_same_status_on_unit_after_unit_stops_the_batch():
    with FakeOpenAIServer(api_key=KEY, models={"another-model"}) as server:
        out_err = None
        try:
            ai.explain_units(_units(40), model_id="demo", source="h",
                             client=_client(server, max_concurrency=1), progress=False)
        except ai.EndpointNotFoundError as err:
            out_err = err
        assert out_err is not None and "5 units in a row" in str(out_err)
        assert "404" in str(out_err) and LLM in str(out_err)
        assert 5 <= len(server.requests) <= 6  # (a 6th unit may start before the 5th ends)


def test_first_json_reads_answers_and_refuses_deep_ones():
    assert first_json('Sure! ```json\n{"activations": [1, 2]}\n```') == {"activations": [1, 2]}
    assert first_json('see [the list] {"a": "]"}') == {"a": "]"}
    # starts that nest too deep are skipped, and so is one deep inside open brackets
    assert first_json("[" * 5000 + "]" * 5000 + ' {"a": 1}') == {"a": 1}
    with pytest.raises(ValueError):
        first_json("[" * 5000 + ' {"a": 1}')
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert first_json(nested) == json.loads(nested)
    # one level more: that start is skipped, the next "[" (64 deep) is read
    assert first_json("[" + nested + "]") == json.loads(nested)
    for bad in ("[" * 5000, "{" * 100_000, "no json here", '{"a": ', ""):
        with pytest.raises(ValueError, match="no JSON"):
            first_json(bad)
    with pytest.raises(ValueError, match="int, not text"):
        first_json(5)


def test_first_json_is_linear():
    def seconds(text: str) -> float:
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            try:
                first_json(text)
            except ValueError:
                pass
            best = min(best, time.perf_counter() - t0)
        return best

    # sizes past the CPU caches, so that the ratio shows the algorithm, not the cache
    small, big = seconds("[" * 1_000_000), seconds("[" * 4_000_000)
    assert small < 0.25  # the target, 50 ms, is measured by benchmarks/bench_first_json.py
    assert big / small < 8  # 4x the input: ~4x the time, not 16x


def test_explanations_are_normalised():
    text, cut = normalize_explanation("  the \u202eword\u2066 \x07apple\ud800\n here. ")
    assert text == "the word apple\ufffd here." and cut == 0
    text, cut = normalize_explanation("word " * 20_000)
    assert cut == 100_000 and len(text) <= MAX_EXPLANATION_CHARS and text.endswith(" […]")
    assert display_text("a\u202eb\x1bc\ttab") == "a\\u202eb\\u001bc\ttab"
    assert display_text("plain text") == "plain text"


def test_store_keeps_surrogates_and_long_text_safe(tmp_path):
    store = ai.AutoInterpStore(tmp_path / "s.sqlite")
    e = ai.Entry("m\ud800", "h", 1, "x", "llm", "apple\ud800 " + "pie " * 30_000)
    store.put(e)
    (got,) = store.entries()
    assert got.model == "m\ufffd" and got.explanation.startswith("apple\ufffd pie")
    assert got.meta["explanation_cut_from"] > 100_000


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s"]))
