"""Clients as the tests make them: the operator-key holder's signing interceptor, and Temporal's
own client with no CodeBlue credential (an attacker's, or an insider's with raw access)."""

from __future__ import annotations

import os

from temporalio.client import Client

from domain.identity import ENV_KEY, ENV_MAX_AGE, keyring_from_env
from worker.identity import IdentityInterceptor
from worker.temporal import data_converter


def use_test_keys() -> None:
    """Every client the tests make signs human commands with this operator key (as the payload's
    `by`, with no "(operator key)" suffix unless a test asks for one), and every worker built
    from such a client verifies them. A time-skipping server runs the workflow clock hours ahead
    of the wall clock the signer reads: the freshness check of update proofs is off here
    (tests/worker/test_identity.py covers it). Set once, at import, by tests/conftest.py and by
    `python -m tests.support.record_histories` (the suite replays what it records)."""
    os.environ.setdefault(ENV_KEY, "test-operator-key-0123456789abcdef")
    os.environ.setdefault(ENV_MAX_AGE, "0")


def signing_interceptors() -> list:
    """The tests' client signs typed names as a commander and admin, as the CLI's operator-key
    holder may (an admin: the playbook tests start procedures for incidents nobody opened)."""
    return [IdentityInterceptor(keyring_from_env(), via="", roles=["commander", "admin"])]


async def raw_client(env, *interceptors) -> Client:
    """Temporal's own client with CodeBlue's converter and no operator key."""
    return await Client.connect(env.client.service_client.config.target_host, namespace=env.client.namespace,
                                data_converter=data_converter(), interceptors=list(interceptors))
