"""The LLM path against a real HTTP server on 127.0.0.1 (`FakeOpenAIServer`): request shape,
parsing, retries, errors, the call cap, cancel, what is stored, and that the API key is stored
nowhere."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
from openai_server import FakeOpenAIServer

from interp_widgets import autointerp as ai
from interp_widgets.autointerp import prompts

KEY = "sk-test-9f8e7d6c5b4a39281706"
LLM = "fake-llm"
WORDS = [" the", " cat", " apple", " sat", " on", " mat", ".", " dog"]


def _record(i: int, source: str, hit: bool) -> ai.ActivationRecord:
    toks = [WORDS[(i * 3 + j) % len(WORDS)] for j in range(8)]
    if not hit:
        toks = [t if t != " apple" else " pear" for t in toks]
    acts = [4.0 if t == " apple" else 0.0 for t in toks]
    return ai.ActivationRecord(toks, acts, source=source)


RECORDS = [_record(i, "top", True) for i in range(6)] + [_record(i, "random", i % 2 == 0)
                                                          for i in range(6)]


@pytest.fixture
def server():
    with FakeOpenAIServer(api_key=KEY, models={LLM}) as s:
        yield s


def client(server, **kw) -> ai.Client:
    kw.setdefault("backoff", 0.01)
    return ai.Client(LLM, base_url=server.base_url, api_key=kw.pop("api_key", KEY), **kw)


def test_explain_request_shape_and_parsing(server):
    text = ai.explain(RECORDS[:3], client=client(server))
    assert text == 'the token " apple"' and text.kind == "llm" and text.explainer == LLM
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["model"] == LLM and body["temperature"] == 0
    system, user = body["messages"]
    assert system == {"role": "system", "content": prompts.EXPLAIN_SYSTEM}
    assert user["role"] == "user"
    content = user["content"]
    assert content.count("<start>\n") == content.count("<end>\n") >= 3
    assert " apple\t10\n" in content and " the\t0\n" in content  # token<TAB>activation, 0-10
    assert content.endswith("Explanation of neuron 1 behavior: the main thing this neuron "
                            "does is find")


def test_sparse_units_repeat_nonzero_tokens(server):
    sparse = [ai.ActivationRecord([" a"] * 9 + [" b"], [0.0] * 9 + [2.0])]
    ai.explain(sparse, client=client(server))
    content = server.requests[0]["body"]["messages"][1]["content"]
    tail = content.split("Same activations, but with all zeros filtered out:\n", 1)[1]
    assert tail.startswith("<start>\n b\t10\n<end>\n")
    dense = [ai.ActivationRecord([" a", " b"], [1.0, 2.0])]
    ai.explain(dense, client=client(server))
    assert "filtered out" not in server.requests[1]["body"]["messages"][1]["content"]


def test_simulate_with_logprobs_is_expected_value(server):
    rec = RECORDS[0]
    pred = ai.simulate('the token " apple"', [rec], client=client(server))
    (req,) = server.requests
    assert req["path"] == "/v1/completions"
    body = req["body"]
    assert body["echo"] is True and body["max_tokens"] == 0 and body["logprobs"] == 15
    assert body["prompt"].count("\tunknown\n") == len(rec.tokens)
    # the server puts p(10)=0.8, p(0)=0.2 on " apple" and p(0)=0.9, p(1)=0.1 elsewhere
    want = [8.0 if t == " apple" else 0.1 for t in rec.tokens]
    assert pred[0] == pytest.approx(want)


def test_simulate_falls_back_to_json_without_logprobs(server):
    server.logprobs = False
    c = client(server)
    pred = ai.simulate('the token " apple"', RECORDS[:2], client=c)
    assert c.logprobs is False
    assert server.paths() == ["/v1/completions"] + ["/v1/chat/completions"] * 2
    chat = server.requests[-1]["body"]
    assert chat["temperature"] == 0 and '{"activations": [...]}' in chat["messages"][1]["content"]
    assert pred == [[10.0 if t == " apple" else 0.0 for t in r.tokens] for r in RECORDS[:2]]
    n = len(server.requests)
    ai.simulate('the token " apple"', RECORDS[:1], client=c)  # remembered: no logprob try
    assert server.paths()[n:] == ["/v1/chat/completions"]


def test_expected_value_renormalises_numeric_tokens():
    top = {"3": math.log(0.5), " 7": math.log(0.25), "x": math.log(0.25)}
    assert ai.expected_value(top) == pytest.approx((3 * 0.5 + 7 * 0.25) / 0.75)
    assert ai.expected_value({"a": -1.0}) == 0.0


def test_retry_after_429_and_5xx(server):
    server.fail(429, 2)
    c = client(server)
    assert ai.explain(RECORDS[:2], client=c) == 'the token " apple"'
    assert c.calls == 3 and len(server.requests) == 3
    server.fail(503, 1)
    ai.explain(RECORDS[:2], client=c)
    assert c.calls == 5


def test_retry_after_a_timeout_with_exponential_backoff(server):
    server.stall(2.0, 2)  # the first two requests outlast the client's timeout
    c = client(server, timeout=0.3)
    assert ai.explain(RECORDS[:2], client=c) == 'the token " apple"'
    assert c.calls == 3 and len(server.requests) == 3
    # without a Retry-After, waits double per attempt (with jitter in [0.5, 1]) up to a cap
    c = client(server, backoff=1.0, max_backoff=5.0)
    for attempt, top in enumerate([1.0, 2.0, 4.0, 5.0, 5.0]):
        waits = [c._delay(attempt, None) for _ in range(50)]
        assert 0.5 * top <= min(waits) and max(waits) <= top
    assert c._delay(0, 3.0) == 3.0 and c._delay(0, 60.0) == 5.0  # Retry-After, capped


def test_retries_exhausted(server):
    server.fail(500, 10)
    c = client(server, max_retries=2)
    with pytest.raises(ai.RetriesExhaustedError, match="3 attempts"):
        ai.explain(RECORDS[:2], client=c)
    assert len(server.requests) == 3


def test_401_names_authentication_and_hides_the_key(server):
    wrong = "sk-wrong-000011112222"
    with pytest.raises(ai.AuthenticationError, match="Authentication failed") as info:
        ai.explain(RECORDS[:2], client=client(server, api_key=wrong))
    assert "401" in str(info.value) and wrong not in str(info.value)
    assert len(server.requests) == 1  # no retry on 401


def test_404_names_model_and_url(server):
    c = ai.Client("no-such-model", base_url=server.base_url, api_key=KEY)
    with pytest.raises(ai.EndpointNotFoundError, match="no-such-model") as info:
        ai.explain(RECORDS[:2], client=c)
    assert server.base_url in str(info.value)


def test_unparseable_answer_is_a_clear_error(server):
    server.garbage = True
    with pytest.raises(ai.ResponseParseError, match="activations"):
        ai.simulate("x", RECORDS[:1], client=client(server), method="json")
    with pytest.raises(ai.ResponseParseError, match="probabilities"):
        ai.score('the token " apple"', RECORDS, client=client(server), method="logprobs",
                 fuzzing=False)


def test_score_with_llm(server):
    s = ai.score('the token " apple"', RECORDS, client=client(server))
    assert s.simulator == f"llm:{LLM}"
    assert s.correlation > 0.9 and s.detection_balanced_accuracy == 1.0
    assert s.detection_auc == 1.0 and s.fuzzing_auc == 1.0
    judge = [r for r in server.requests if "Description:" in str(r["body"].get("messages"))]
    assert all(r["body"]["temperature"] == 0 for r in judge)
    # detection and fuzzing (Delphi's): the same 9 samples, 6 top records against the 3 random
    # ones that do not fire (fuzzing marks the top records' active tokens and random tokens of
    # the random records), 5 per call
    assert len(judge) == 2 * math.ceil(9 / 5)


def test_environment_variables_are_honoured(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    c = ai.Client(LLM)
    assert c.base_url == server.base_url
    ai.explain(RECORDS[:2], client=c)
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(c)


def test_no_key_and_no_url_says_how_to_fix(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ai.AuthenticationError, match="OPENAI_API_KEY.*offline"):
        ai.Client()


def test_concurrency_is_bounded(server):
    server.latency = 0.05
    c = client(server, max_concurrency=3)
    ai.simulate('the token " apple"', RECORDS, client=c)
    assert 1 < server.max_in_flight <= 3


def _units(n: int) -> dict[int, list[ai.ActivationRecord]]:
    return {u: RECORDS for u in range(n)}


def _assert_whole(store: ai.AutoInterpStore) -> None:
    for e in store.entries():
        assert e.explanation and not math.isnan(e.scores.correlation)
        assert not math.isnan(e.scores.fuzzing_auc)


def test_failed_batch_keeps_finished_units_and_nothing_partial(server, tmp_path):
    store = ai.AutoInterpStore(tmp_path / "ai.sqlite")

    def break_key(done, total, entry):
        server.api_key = "sk-rotated-key-0000"  # every later request is refused

    with pytest.raises(ai.AuthenticationError):
        ai.explain_units(_units(4), model_id="demo", source="blocks.0.mlp.hook_post",
                         store=store, client=client(server, max_concurrency=1),
                         on_progress=break_key, progress=False)
    assert [e.unit for e in store.entries()] == [0]
    _assert_whole(store)


def test_call_cap_stops_the_batch(server, tmp_path):
    store = ai.AutoInterpStore(tmp_path / "ai.sqlite")
    with pytest.raises(ai.CallLimitError, match="max_calls=40"):
        ai.explain_units(_units(5), model_id="demo", source="h", store=store,
                         client=client(server, max_concurrency=1), max_calls=40, progress=False)
    assert len(server.requests) == 40
    assert 0 < len(store) < 5
    _assert_whole(store)


def test_cancel_keeps_finished_units(server, tmp_path):
    store = ai.AutoInterpStore(tmp_path / "ai.sqlite")
    cancel = threading.Event()
    out = ai.explain_units(_units(4), model_id="demo", source="h", store=store,
                           client=client(server, max_concurrency=1), cancel=cancel,
                           on_progress=lambda *a: cancel.set(), progress=False)
    assert out.cancelled and len(out.done) == 1 and len(store) == 1
    _assert_whole(store)


def test_parse_failures_are_listed_and_the_batch_goes_on(server, tmp_path):
    server.garbage = True
    store = ai.AutoInterpStore(tmp_path / "ai.sqlite")
    out = ai.explain_units(_units(2), model_id="demo", source="h", store=store,
                           client=client(server), method="json", progress=False)
    assert sorted(out.failed) == [0, 1] and len(store) == 0
    assert "activations" in out.failed[0] or "probabilities" in out.failed[0]


def test_api_key_is_in_no_stored_file(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    store = ai.AutoInterpStore(tmp_path / "ai.sqlite")
    out = ai.explain_units(_units(2), model_id="demo", source="h", store=store,
                           model=LLM, client=ai.Client(LLM, backoff=0.01), progress=False)
    assert len(out.done) == 2
    assert store.entries()[0].meta["endpoint"] == server.base_url
    store.export_json(tmp_path / "np.json")
    store.export_json(tmp_path / "np.jsonl")
    files = [p for p in Path(tmp_path).rglob("*") if p.is_file()]
    assert len(files) >= 3
    for p in files:
        data = p.read_bytes()
        assert KEY.encode() not in data, p


def test_public_url_drops_credentials_and_query():
    from interp_widgets.autointerp.client import public_url

    assert public_url("https://u:secret@host.example:8443/v1/?key=abc") == \
        "https://host.example:8443/v1"
