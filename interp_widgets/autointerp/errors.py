"""Errors of the auto-interp client and pipeline; each says what went wrong and what would be
right. None of them ever carries the API key."""

from __future__ import annotations


class AutoInterpError(RuntimeError):
    """Base class of every auto-interp failure."""


class AuthenticationError(AutoInterpError):
    """HTTP 401/403: the endpoint rejected the API key."""


class EndpointNotFoundError(AutoInterpError):
    """HTTP 404: the model or the API path does not exist at the endpoint."""


class ResponseParseError(AutoInterpError):
    """The model answered, but not in the shape the prompt asked for."""


class CallLimitError(AutoInterpError):
    """A batch reached its cap on API calls (`max_calls`)."""


class RetriesExhaustedError(AutoInterpError):
    """Rate limits, server errors or timeouts persisted through every retry."""


class Cancelled(AutoInterpError):  # noqa: N818 - reads as a state, like asyncio.CancelledError
    """The batch was cancelled (its `cancel` event was set) before this call finished."""
