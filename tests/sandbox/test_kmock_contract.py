"""The kmock internals the sandbox's API server overrides (sandbox/cluster.py): a kmock release
that renames or reshapes one of them fails here, by name, instead of deep inside a drill."""

from __future__ import annotations

import inspect

import kmock

from sandbox.cluster import SandboxEmulator

OVERRIDDEN = ("_handle", "_serve_fetch", "_serve_update", "_serve_create", "_serve_list")


def test_the_private_methods_the_sandbox_overrides_exist_as_it_calls_them():
    base = kmock.KubernetesEmulator
    for name in OVERRIDDEN:
        method = getattr(base, name, None)
        assert method is not None, f"kmock.KubernetesEmulator.{name} is gone: adapt sandbox/cluster.py"
        assert inspect.iscoroutinefunction(method), name
        assert list(inspect.signature(method).parameters) == ["self", "request"], (name, inspect.signature(method))
        assert getattr(SandboxEmulator, name) is not method, f"the sandbox no longer overrides {name}: drop it here"
    assert inspect.iscoroutinefunction(base.__call__)
    for public in ("KubernetesError", "KubernetesObjectNotFoundError", "KubernetesResourceNotFoundError", "Request"):
        assert hasattr(kmock, public), public
    assert {"WATCH", "CREATE", "UPDATE"} <= {a.name for a in kmock.action}
