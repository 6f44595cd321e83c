"""CodeBlue's release, as installed (the API's OpenAPI version, the worker's build ID)."""

from __future__ import annotations

from importlib import metadata


def package_version() -> str:
    try:
        return metadata.version("codeblue")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"
