"""RFC 9457 problem bodies, and the mapping from CodeBlue's one-line errors to HTTP statuses."""

from __future__ import annotations

from fastapi.responses import JSONResponse

PROBLEM = "application/problem+json"


class Problem(Exception):
    """Raised by handlers; becomes a JSON problem body with this status."""

    def __init__(self, status: int, detail: str, title: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after
        self.title = title or _TITLES.get(status, "Error")


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def problem_response(status: int, detail: str, title: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": title or _TITLES.get(status, "Error"), "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


# Ordered: the first fragment found in the message decides (the workflow's and the service's wording).
_BY_MESSAGE: list[tuple[str, int]] = [
    ("unknown incident", 404),
    ("no post-incident work", 404),
    ("is not the ic", 403),
    ("unreachable", 503),
    ("cannot reach temporal", 503),
    ("already exists", 409),
    ("is closed", 409),
    ("is not the incident commander", 403),
    ("no incident commander is assigned", 409),
    ("already decided", 409),
    ("already being verified", 409),
    ("in the catalog already", 409),
    ("being named already", 409),
    ("no longer", 409),
    ("rejected:", 422),
    ("temporal refused", 502),
]


def status_for(message: str) -> int:
    low = message.lower()
    for fragment, status in _BY_MESSAGE:
        if fragment in low:
            return status
    return 422
