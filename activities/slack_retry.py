"""Slack's rate limits (HTTP 429 `ratelimited` with `Retry-After`) honoured by slack_sdk's own
retry handler, bounded for CodeBlue's callers.

slack_sdk's `AsyncRateLimitErrorRetryHandler` sleeps for Retry-After plus up to 1 s of jitter,
as often as `max_retry_count` allows, however long Retry-After is. `BoundedRateLimitRetry` is
that handler with two limits more: it retries only the Web API methods it is given (a retry of
a non-idempotent one could post twice) and only while Retry-After is at most
`max_wait_seconds`; past either limit the 429 reaches the caller as `ratelimited`. Its worst
wait is `max_retry_count * (max_wait_seconds + 1)` seconds.

Imports slack_sdk (and aiohttp) at once: the activities load this module on first use
(`activities.deferred`), the API at start.
"""

from __future__ import annotations

from collections.abc import Iterable

from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState


def api_method(url: str) -> str:
    """The Web API method a request URL names: '.../api/chat.update?x=1' -> 'chat.update'."""
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def retry_after_header(response: HttpResponse | None) -> str | None:
    """The response's Retry-After as sent (None: no response, or no such header)."""
    for k, v in (response.headers if response is not None else {}).items():
        if k.lower() == "retry-after":
            return str(v[0] if isinstance(v, list) and v else v)
    return None


class BoundedRateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's 429 handler, only for `methods` and only while Retry-After <= `max_wait_seconds`."""

    def __init__(self, methods: Iterable[str], max_retry_count: int = 1, max_wait_seconds: int = 1) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.methods = frozenset(methods)
        self.max_wait_seconds = max_wait_seconds

    @property
    def worst_wait_seconds(self) -> float:
        """The longest this handler sleeps for one call (slack_sdk adds up to 1 s of jitter)."""
        return self.max_retry_count * (self.max_wait_seconds + 1.0)

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        if not await super()._can_retry_async(state=state, request=request, response=response, error=error):
            return False
        if api_method(request.url) not in self.methods:
            return False
        header = retry_after_header(response)
        if header is None:
            return self.max_wait_seconds >= 1  # slack_sdk then waits 1-2 s
        try:
            seconds = int(header)  # as slack_sdk reads it; Slack sends whole seconds
        except ValueError:
            return False  # an HTTP date: slack_sdk's handler would fail on it
        return 0 <= seconds <= self.max_wait_seconds
