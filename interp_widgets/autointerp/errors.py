"""Errors of the auto-interp client and pipeline; each says what went wrong and what would be
right. None of them ever carries the API key: the client raises them outside its `except`
blocks, so no exception is chained to them (`__cause__` and `__context__` are None) and no
request, with its headers, travels with them."""

from __future__ import annotations


class AutoInterpError(RuntimeError):
    """Base class of every auto-interp failure. `status`: the HTTP status when one was seen."""

    status: int | None = None

    def __init__(self, message: str = "", *, status: int | None = None):
        super().__init__(message)
        self.status = status


class AuthenticationError(AutoInterpError):
    """HTTP 401/403: the endpoint rejected the API key (stops a batch)."""


class EndpointNotFoundError(AutoInterpError):
    """HTTP 404: the model or the API path does not exist at the endpoint."""


class EndpointUnreachableError(AutoInterpError):
    """No connection could be made to the endpoint, through every retry (stops a batch)."""


class ResponseParseError(AutoInterpError):
    """The endpoint answered, but not in the shape the request asked for."""


class CallLimitError(AutoInterpError):
    """A batch reached its cap on API calls (`max_calls`)."""


class RetriesExhaustedError(AutoInterpError):
    """Rate limits, server errors, timeouts or dropped connections persisted through every
    retry."""


class StoreError(AutoInterpError):
    """A result store cannot be opened or written: not ours, newer, corrupt or unwritable."""


class Cancelled(AutoInterpError):  # noqa: N818 - reads as a state, like asyncio.CancelledError
    """The batch was cancelled (its `cancel` event was set) before this call finished."""


#: failures that stop a whole batch at once: nothing later could succeed
GLOBAL_ERRORS = (AuthenticationError, EndpointUnreachableError, CallLimitError, StoreError)


def one_line(text: object, limit: int = 300) -> str:
    """`text` on one line (whitespace runs as one space), at most `limit` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[:limit - 1] + "…"


def reason(err: BaseException) -> str:
    """The one-line reason a unit failed, for `BatchResult.failed` and the Explain panel."""
    if isinstance(err, AutoInterpError):
        return one_line(err, 500)
    return one_line(f"unexpected {type(err).__name__}: {err}", 500)
