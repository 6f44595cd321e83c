"""Length limits for what a command may carry (tests/workflows/test_input_bounds.py holds every signal
and update field to one): an oversized command fails to decode and never reaches state."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

Name = Annotated[str, Field(max_length=200)]  # a person, an action ID, a label, a key
Text = Annotated[str, Field(max_length=4000)]  # a reason, a note, notes of a meeting
Digest = Annotated[str, Field(max_length=128)]  # a MAC, a hash, a key ID
# a command's verified roles (worker.identity sets them from its proof)
Roles = Annotated[list[Name], Field(max_length=20)]
