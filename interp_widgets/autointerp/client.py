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

import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .errors import (
    AuthenticationError,
    AutoInterpError,
    CallLimitError,
    Cancelled,
    EndpointNotFoundError,
    ResponseParseError,
    RetriesExhaustedError,
)

T = TypeVar("T")
R = TypeVar("R")
DEFAULT_MODEL = "gpt-4o-mini"
_RETRY_STATUS = {408, 409, 429}


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
        """The text of the first choice of a chat completion."""
        resp = self._request(lambda: self._openai.chat.completions.create(
            model=self.model, messages=messages, temperature=temperature, max_tokens=max_tokens),
            budget, cancel, "/chat/completions")
        try:
            return resp.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            raise ResponseParseError(f"The chat answer of model {self.model!r} at {self.base_url} "
                                     f"has no choices[0].message.content: {str(resp)[:200]!r}"
                                     ) from None

    def chat_completion(self, *, messages: list[dict], budget: Budget | None = None,
                        cancel: threading.Event | None = None, **kwargs: Any) -> Any:
        """The whole chat-completion response (for tool calling: pass tools=[...]), with this
        client's retries, budget and error messages."""
        return self._request(lambda: self._openai.chat.completions.create(
            model=self.model, messages=messages, **kwargs), budget, cancel, "/chat/completions")

    def completion_logprobs(self, prompt: str, *, logprobs: int = 15, budget: Budget | None = None,
                            cancel: threading.Event | None = None) -> Any:
        """`choices[0].logprobs` of a completion that echoes `prompt` (max_tokens=0)."""
        resp = self._request(lambda: self._openai.completions.create(
            model=self.model, prompt=prompt, max_tokens=0, echo=True, logprobs=logprobs,
            temperature=0), budget, cancel, "/completions")
        try:
            return resp.choices[0].logprobs
        except (AttributeError, IndexError, TypeError):
            return None

    def _request(self, send: Callable[[], T], budget: Budget | None,
                 cancel: threading.Event | None, path: str) -> T:
        import openai

        last = ""
        for attempt in range(self.max_retries + 1):
            if cancel is not None and cancel.is_set():
                raise Cancelled("Cancelled before the request was sent.")
            if budget is not None:
                budget.take()
            try:
                with self._slots:
                    with self._lock:
                        self.calls += 1
                    return send()
            except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
                raise AuthenticationError(
                    f"Authentication failed (HTTP {err.status_code}) at {self.base_url}{path}: "
                    "the endpoint rejected the API key. Set OPENAI_API_KEY or pass api_key=... "
                    "with a key this endpoint accepts.") from None
            except openai.NotFoundError as err:
                raise EndpointNotFoundError(
                    f"HTTP 404 from {self.base_url}{path}: the model {self.model!r} or this API "
                    f"path does not exist there ({_message(err)}). Check model= and base_url= "
                    "(an OpenAI-compatible base URL usually ends in /v1).") from None
            except openai.APIStatusError as err:
                if err.status_code not in _RETRY_STATUS and err.status_code < 500:
                    raise AutoInterpError(
                        f"HTTP {err.status_code} from {self.base_url}{path} for model "
                        f"{self.model!r}: {_message(err)}") from None
                last, delay = f"HTTP {err.status_code}: {_message(err)}", _retry_after(err)
            except (openai.APITimeoutError, openai.APIConnectionError) as err:
                last, delay = f"{type(err).__name__}: {err}", None
            if attempt == self.max_retries:
                break
            wait_s = self._delay(attempt, delay)
            if cancel is not None:
                if cancel.wait(wait_s):
                    raise Cancelled("Cancelled while waiting to retry.")
            else:
                time.sleep(wait_s)
        raise RetriesExhaustedError(
            f"{self.base_url}{path} kept failing after {self.max_retries + 1} attempts (last: "
            f"{last}). Wait and retry, lower max_concurrency, or raise max_retries.")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
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
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
        if isinstance(inner, str):
            return inner[:300]
    return str(getattr(err, "message", err))[:300]


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


def first_json(text: str) -> Any:
    """The first JSON object or array in `text` (code fences and prose around it ignored);
    ValueError when there is none."""
    import json

    dec = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                return dec.raw_decode(text[i:])[0]
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object or array in the answer")


def as_floats(values: Any, n: int, lo: float, hi: float) -> list[float]:
    """`values` as n floats clipped to [lo, hi]; ValueError when the shape is wrong."""
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != n:
        got = len(values) if isinstance(values, Sequence) else type(values).__name__
        raise ValueError(f"expected a list of {n} numbers, got {got}")
    try:
        return [min(hi, max(lo, float(v))) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"expected numbers, got {list(values)[:5]!r}") from None
