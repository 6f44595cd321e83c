"""The user-facing error of every starter, in a module that imports nothing: the CLI's API path
(`CODEBLUE_API_URL`) reports it without loading the Temporal client."""

from __future__ import annotations


class CodeBlueError(Exception):
    """A user-facing failure: the message is one line, no traceback."""
