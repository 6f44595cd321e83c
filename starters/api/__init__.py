"""`codeblue api`: the HTTP face of CodeBlue (FastAPI), built by `create_app`."""

from starters.api.app import create_app

__all__ = ["create_app"]
