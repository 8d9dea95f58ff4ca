"""The LLM client: the `openai` package against any OpenAI-compatible endpoint.

`Client` adds what auto-interp batches need around `openai.OpenAI`:
- configuration from arguments or the environment (`OPENAI_API_KEY`, `OPENAI_BASE_URL`);
- at most `max_concurrency` requests in flight across threads (a semaphore);
- retries with exponential backoff and jitter on 429, 408/409, 5xx, timeouts and dropped
  connections, honouring ``Retry-After``. Written here rather than left to openai's own
  `max_retries` (set to 0) because a batch needs every attempt to count against its cap on calls
  (`Budget`) and a cancel to cut a backoff short, and openai's retry loop allows neither;
- errors for people: 401/403 names authentication, 404 names the model and base URL.

The API key goes to `openai.OpenAI` and nowhere else: `Client` keeps no copy, its repr shows the
base URL without credentials, and nothing here logs or stores it.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from .errors import (
    AuthenticationError,
    AutoInterpError,
    CallLimitError,
    Cancelled,
    EndpointNotFoundError,
    EndpointUnreachableError,
    ResponseParseError,
    RetriesExhaustedError,
    one_line,
)

T = TypeVar("T")
R = TypeVar("R")
DEFAULT_MODEL = "gpt-4o-mini"
_RETRY_STATUS = {408, 409, 429}
_MISSING = object()


def public_url(url: str) -> str:
    """`url` without user:password and query string (safe to show and to store)."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


class Budget:
    """A cap on API calls (every attempt, retries included) shared by one batch's threads."""

    def __init__(self, max_calls: int | None):
        if max_calls is not None and (not isinstance(max_calls, int) or max_calls < 1):
            raise ValueError(f"max_calls must be a positive int or None; got {max_calls!r}.")
        self.max_calls, self.used = max_calls, 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.max_calls is not None and self.used >= self.max_calls:
                raise CallLimitError(
                    f"This batch reached its cap of max_calls={self.max_calls} API calls "
                    "(retries count). Finished units are kept; raise max_calls or explain fewer "
                    "units.")
            self.used += 1


class Client:
    """An OpenAI-compatible endpoint for explain / simulate / score.

    model: the model name the endpoint serves. base_url, api_key: default to the environment
    (`OPENAI_BASE_URL`, `OPENAI_API_KEY`); with a base URL and no key a placeholder key is sent
    (local servers often need none; a 401 then says so). client: an existing `openai.OpenAI`
    instead (its own retries are not turned off then). max_concurrency: requests in flight at
    once. max_retries, backoff, max_backoff: retry policy (delay ``backoff * 2**attempt``, capped,
    with jitter). timeout: seconds per request.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, base_url: str | None = None,
                 api_key: str | None = None, client: Any = None, max_concurrency: int = 8,
                 max_retries: int = 5, backoff: float = 0.5, max_backoff: float = 20.0,
                 timeout: float = 60.0, seed: int | None = None):
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be an int >= 1; got {max_concurrency!r}.")
        if client is None:
            import openai

            base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
            key = api_key or os.environ.get("OPENAI_API_KEY") or None
            if key is None:
                if base_url is None:
                    raise AuthenticationError(
                        "No API key for the OpenAI API: set the OPENAI_API_KEY environment "
                        "variable or pass api_key=...; for a local OpenAI-compatible server pass "
                        "base_url=... (or OPENAI_BASE_URL); or use explainer='offline', which "
                        "needs no network.")
                key = "no-key"
            client = openai.OpenAI(api_key=key, base_url=base_url, max_retries=0,
                                   timeout=timeout)
        self.model = model
        self._openai = client
        self.base_url = public_url(str(getattr(client, "base_url", "")))
        self.max_concurrency = max_concurrency
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.calls = 0  # HTTP attempts made through this client, retries included
        self.logprobs: bool | None = None  # whether /v1/completions logprobs work (None: untried)

    def __repr__(self) -> str:
        return (f"Client(model={self.model!r}, base_url={self.base_url!r}, "
                f"max_concurrency={self.max_concurrency})")

    # ---- requests ----

    def chat(self, messages: list[dict[str, str]], *, temperature: float = 0.0,
             max_tokens: int = 512, budget: Budget | None = None,
             cancel: threading.Event | None = None) -> str:
        """The text of the first choice of a chat completion ("" when it is null)."""
        path = "/chat/completions"
        raw = self._request(lambda: self._openai.chat.completions.with_raw_response.create(
            model=self.model, messages=messages, temperature=temperature, max_tokens=max_tokens),
            budget, cancel, path)
        resp = self._parse(raw, path)
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError, KeyError, TypeError):
            content = _MISSING
        if content is None:
            return ""
        if not isinstance(content, str):
            what = "no choices[0].message.content" if content is _MISSING else \
                f"a message content that is {type(content).__name__}, not text"
            raise self._unreadable(raw, path, what)
        return content

    def chat_completion(self, *, messages: list[dict], budget: Budget | None = None,
                        cancel: threading.Event | None = None, **kwargs: Any) -> Any:
        """The whole chat-completion response (for tool calling: pass tools=[...]), with this
        client's retries, budget and error messages."""
        return self._request(lambda: self._openai.chat.completions.create(
            model=self.model, messages=messages, **kwargs), budget, cancel, "/chat/completions")

    def completion_logprobs(self, prompt: str, *, logprobs: int = 15, budget: Budget | None = None,
                            cancel: threading.Event | None = None) -> Any:
        """`choices[0].logprobs` of a completion that echoes `prompt` (max_tokens=0); None when
        the answer has none."""
        path = "/completions"
        raw = self._request(lambda: self._openai.completions.with_raw_response.create(
            model=self.model, prompt=prompt, max_tokens=0, echo=True, logprobs=logprobs,
            temperature=0), budget, cancel, path)
        try:
            return self._parse(raw, path).choices[0].logprobs
        except (AttributeError, IndexError, KeyError, TypeError):
            return None

    def where(self, path: str) -> str:
        """The URL of `path` at this endpoint, for messages."""
        return f"{self.base_url}{path}"

    def redact(self, text: str) -> str:
        """`text` with the API key (if it is in it, e.g. echoed by a server) replaced by ***."""
        key = getattr(self._openai, "api_key", None)
        if isinstance(key, str) and len(key) >= 8 and key in text:
            text = text.replace(key, "***")
        return text

    def _parse(self, raw: Any, path: str) -> Any:
        """The parsed model object of a raw response; ResponseParseError (with the status, the
        content type and the start of the body) when the body is not the JSON asked for."""
        try:
            parsed = raw.parse() if hasattr(raw, "parse") else raw
        except Exception as err:  # noqa: BLE001 - any body at all becomes a one-line reason
            failure = self._unreadable(raw, path, f"a body that does not parse "
                                       f"({type(err).__name__}: {one_line(err, 120)})")
        else:
            if not isinstance(parsed, str):
                return parsed
            failure = self._unreadable(raw, path, "a body that is not JSON")
        raise failure

    def _unreadable(self, raw: Any, path: str, what: str) -> ResponseParseError:
        http = getattr(raw, "http_response", None)
        status = getattr(http, "status_code", None)
        ctype = (getattr(http, "headers", None) or {}).get("content-type", "no content type")
        return ResponseParseError(self.redact(one_line(
            f"Model {self.model!r} at {self.where(path)} answered (HTTP {status}, {ctype}) with "
            f"{what}; body {_snippet(http)}")), status=status)

    def _request(self, send: Callable[[], T], budget: Budget | None,
                 cancel: threading.Event | None, path: str) -> T:
        """`send()` with retries; every failure is raised as an AutoInterpError outside the
        `except` block that caught it, so that no openai exception (whose request holds the
        API key in its headers) is chained to it."""
        import openai

        last, unreachable = "", False
        for attempt in range(self.max_retries + 1):
            if cancel is not None and cancel.is_set():
                raise Cancelled("Cancelled before the request was sent.")
            if budget is not None:
                budget.take()
            failure: AutoInterpError | None = None
            delay: float | None = None
            try:
                with self._slots:
                    with self._lock:
                        self.calls += 1
                    return send()
            except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
                failure = AuthenticationError(
                    f"Authentication failed (HTTP {err.status_code}) at {self.where(path)}: "
                    "the endpoint rejected the API key. Set OPENAI_API_KEY or pass api_key=... "
                    "with a key this endpoint accepts.", status=err.status_code)
            except openai.NotFoundError as err:
                failure = EndpointNotFoundError(self.redact(one_line(
                    f"HTTP 404 from {self.where(path)}: the model {self.model!r} or this API "
                    f"path does not exist there ({_message(err)}). Check model= and base_url= "
                    "(an OpenAI-compatible base URL usually ends in /v1).")), status=404)
            except openai.APIStatusError as err:
                if err.status_code not in _RETRY_STATUS and err.status_code < 500:
                    failure = AutoInterpError(self.redact(one_line(
                        f"HTTP {err.status_code} from {self.where(path)} for model "
                        f"{self.model!r}: {_message(err)}")), status=err.status_code)
                else:
                    last = f"HTTP {err.status_code}: {_message(err)}"
                    delay = _retry_after(err)
            except (openai.APITimeoutError, openai.APIConnectionError) as err:
                cause = err.__cause__ or err.__context__
                unreachable = type(cause).__name__ == "ConnectError"
                last = f"{type(err).__name__}: {one_line(err, 100)}" + (
                    f" ({type(cause).__name__}: {one_line(cause, 100)})" if cause else "")
            except openai.OpenAIError as err:
                failure = AutoInterpError(one_line(
                    f"{type(err).__name__} from {self.where(path)}: {err}"))
            except Exception as err:  # noqa: BLE001 - an answer the openai client choked on
                failure = ResponseParseError(self.redact(one_line(
                    f"Model {self.model!r} at {self.where(path)} sent an answer the openai "
                    f"client could not read ({type(err).__name__}: {one_line(err, 150)})")))
            if failure is not None:
                raise failure
            if attempt == self.max_retries:
                break
            wait_s = self._delay(attempt, delay)
            if cancel is not None:
                if cancel.wait(wait_s):
                    raise Cancelled("Cancelled while waiting to retry.")
            else:
                time.sleep(wait_s)
        kind = EndpointUnreachableError if unreachable else RetriesExhaustedError
        advice = ("Is the server running, and is base_url right?" if unreachable else
                  "Wait and retry, lower max_concurrency, or raise max_retries.")
        raise kind(self.redact(one_line(
            f"{self.where(path)} kept failing after {self.max_retries + 1} attempts (last: "
            f"{last}). {advice}", 600)))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), self.max_backoff)
        base = min(self.backoff * 2**attempt, self.max_backoff)
        with self._lock:
            return base * (0.5 + 0.5 * self._rng.random())

    # ---- concurrency ----

    def map(self, fn: Callable[[T], R], items: Iterable[T],
            cancel: threading.Event | None = None) -> list[R]:
        """[fn(x) for x in items], up to `max_concurrency` at once; the first error cancels the
        rest and is raised."""
        items = list(items)
        if len(items) <= 1 or self.max_concurrency == 1:
            return [fn(x) for x in items]
        stop = threading.Event()

        def one(x: T) -> R:
            if stop.is_set() or (cancel is not None and cancel.is_set()):
                raise Cancelled("Cancelled before this item started.")
            return fn(x)

        with ThreadPoolExecutor(min(self.max_concurrency, len(items))) as pool:
            futures = [pool.submit(one, x) for x in items]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            errors = [f.exception() for f in futures if f.done() and f.exception()]
            if errors:
                stop.set()
                for f in futures:
                    f.cancel()
                raise errors[0]
        return [f.result() for f in futures]


def _message(err: Any) -> str:
    """The error message of an HTTP error answer, on one line (the start of the body when it
    is not an OpenAI error object)."""
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return one_line(inner["message"], 200)
        if isinstance(inner, str):
            return one_line(inner, 200)
    return f"body {_snippet(getattr(err, 'response', None))}"


def _snippet(http: Any, n: int = 120) -> str:
    """The first `n` characters of a response's body, quoted (escapes keep it on one line)."""
    try:
        text = http.text
    except Exception:  # noqa: BLE001 - an undecodable or unread body
        try:
            text = bytes(http.content[:n]).decode("utf-8", "replace")
        except Exception:  # noqa: BLE001
            return "(unreadable)"
    if not isinstance(text, str):
        return "(none)"
    return repr(text[:n]) + ("..." if len(text) > n else "")


def _retry_after(err: Any) -> float | None:
    headers = getattr(getattr(err, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            return float(headers[name]) * scale
        except (KeyError, TypeError, ValueError):
            continue
    return None


def make_client(client: Client | Any | None = None, *, model: str | None = None,
                base_url: str | None = None, api_key: str | None = None,
                **kwargs: Any) -> Client:
    """A `Client` from a `Client` (returned as is), an `openai.OpenAI`, or settings."""
    if isinstance(client, Client):
        return client
    return Client(model or DEFAULT_MODEL, base_url=base_url, api_key=api_key, client=client,
                  **kwargs)


def wants_llm(client: Any, base_url: str | None, api_key: str | None) -> bool:
    """Whether explicit arguments ask for an LLM (environment variables alone do not)."""
    return client is not None or base_url is not None or api_key is not None


MAX_JSON_DEPTH = 64  # deeper brackets are not where an answer's JSON starts or goes
_DECODER = json.JSONDecoder()
_BRACKET_STEP = np.zeros(256, dtype=np.int8)
_BRACKET_STEP[[91, 123]], _BRACKET_STEP[[93, 125]] = 1, -1


def first_json(text: str) -> Any:
    """The first JSON object or array in `text` (code fences and prose around it ignored);
    ValueError when there is none.

    Linear in len(text): a value is looked for only at a "{" or "[" that sits at most
    `MAX_JSON_DEPTH` brackets deep and opens at most that many levels (`_json_starts`, found for
    the whole text at once with numpy), so a run of a million brackets is never handed to the
    decoder, which reads the text in place (no copy per try)."""
    if not isinstance(text, str):
        raise ValueError(f"the answer is {type(text).__name__}, not text")
    for i in _json_starts(text).tolist():
        try:
            return _DECODER.raw_decode(text, i)[0]
        except (json.JSONDecodeError, RecursionError):
            continue
    raise ValueError("no JSON object or array in the answer")


def _json_starts(text: str) -> np.ndarray:
    """Positions [n] of the "{" and "[" of `text` that sit at most D = `MAX_JSON_DEPTH` brackets
    deep (counted from the shallowest point before them) and whose brackets nest at most D deep
    before they close. Brackets inside JSON strings are counted like the others.

    With depth[k] the bracket depth after character k (steps of +1, -1, 0), an opener a at depth
    L nests deeper than D exactly when it is the D-th enclosing opener of some opener j at depth
    L + D, and that one is the last opener before j at depth L (depth cannot drop below L in
    between without a later opener at L). Such a j sits D+1 to 2D deep, so only those are
    searched for, in the (depth, position) order of the openers that can start a value."""
    if text.isascii():
        codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    else:
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        codes = np.where(codes < 128, codes, 0).astype(np.uint8)
    step = np.take(_BRACKET_STEP, codes)  # +1 for "{[", -1 for "]}", else 0
    depth = np.cumsum(step, dtype=np.int32)  # [len(text)] after each character
    rise = depth  # above the shallowest point before (closers without openers lower it)
    if depth.size and depth.min() < 0:
        rise = depth - np.minimum(np.minimum.accumulate(depth), 0)
    opener = step > 0
    pos = np.flatnonzero(opener & (rise <= MAX_JSON_DEPTH))
    deep = np.flatnonzero(opener & (rise > MAX_JSON_DEPTH) & (rise <= 2 * MAX_JSON_DEPTH))
    if not deep.size:
        return pos
    lvl = depth[pos]
    order = np.argsort(lvl, kind="stable")  # (depth, position) order
    base, span = int(lvl.min()), len(text) + 1
    keys = (lvl[order].astype(np.int64) - base) * span + pos[order]
    want = depth[deep].astype(np.int64) - MAX_JSON_DEPTH
    at = np.searchsorted(keys, (want - base) * span + deep) - 1
    ok = at >= 0
    at = at[ok][lvl[order][at[ok]] == want[ok]]
    keep = np.ones(pos.size, dtype=bool)
    keep[order[at]] = False
    return pos[keep]


def as_floats(values: Any, n: int, lo: float, hi: float) -> list[float]:
    """`values` as n floats clipped to [lo, hi]; ValueError when the shape is wrong."""
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != n:
        got = len(values) if isinstance(values, Sequence) else type(values).__name__
        raise ValueError(f"expected a list of {n} numbers, got {got}")
    try:
        return [min(hi, max(lo, float(v))) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"expected numbers, got {list(values)[:5]!r}") from None
