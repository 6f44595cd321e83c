"""One AWS emulator (moto_server) per test process, reset before each test that asks for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from sandbox.aws import AwsEmulator


@pytest_asyncio.fixture(scope="session")
async def aws_server() -> AsyncIterator[AwsEmulator]:
    async with AwsEmulator() as emulator:
        yield emulator


@pytest_asyncio.fixture
async def empty_aws(aws_server: AwsEmulator) -> AwsEmulator:
    """The shared emulator with nothing in it: what a test finds is what it made."""
    await aws_server.reset()
    return aws_server
