"""One lazily created HTTP client for the activity classes that call HTTP endpoints."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

# Deferred (activities.deferred): workflows import this module for its typed activity
# references; httpx load only where an activity uses them.
from activities.deferred import deferred

if TYPE_CHECKING:
    import ssl

    import httpx
else:
    httpx = deferred("httpx")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi's CAs, or $SSL_CERT_FILE / $SSL_CERT_DIR), built
    once per process: each build reads the CA bundle, and a worker makes several clients, a
    probe or a smoke check one per activity object, a forked chaos worker its own set."""
    return httpx.create_ssl_context()


class HttpActivities:
    """Uses the client it is given (the worker shares one) or creates its own on first use;
    `aclose()` closes only a client it created."""

    def __init__(self, http: httpx.AsyncClient | None = None) -> None:
        self._http = http
        self._owns_http = http is None

    def _new_http(self) -> httpx.AsyncClient:
        # Like curl without -L: a redirect is an answer, not followed (and not 2xx).
        return httpx.AsyncClient(follow_redirects=False, verify=tls_context())

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = self._new_http()
        return self._http

    async def aclose(self) -> None:
        if self._owns_http and self._http is not None:
            http, self._http = self._http, None
            await http.aclose()
