"""An AWS API emulator for drills and tests: `moto_server` (moto[server]) over real HTTP.

    async with AwsEmulator() as aws:
        boto3.client("rds", endpoint_url=aws.endpoint_url, region_name=aws.region, ...)

Credentials are dummies scoped to the emulator (`aws.client_kwargs()`); nothing here talks
to real AWS.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import httpx

from activities.http_client import tls_context
from starters.ports import free_port


def _lean_moto_env() -> dict[str, str]:
    """moto's own settings for an empty AMI catalogue: RDS loads moto's EC2 backend (VPCs,
    subnets), which otherwise parses thousands of public AMIs at import and creates them per
    region (a quarter of moto's start-up); no drill asks for one."""
    path = os.path.join(tempfile.gettempdir(), "codeblue-moto-no-amis.json")
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write("[]")
        os.replace(tmp, path)  # whole or absent, whoever writes it first
    return {"MOTO_AMIS_PATH": path, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}


class AwsEmulator:
    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self.port = 0
        self._proc: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for boto3.client(...) that reach only the emulator."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": "sandbox",
            "aws_secret_access_key": "sandbox",
        }

    async def __aenter__(self) -> AwsEmulator:
        exe = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
        if not os.path.exists(exe):
            raise RuntimeError("moto_server not found: install the test extra (pip install -e '.[test]')")
        self.port = free_port()
        self._proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **_lean_moto_env()},
        )
        async with httpx.AsyncClient(verify=tls_context()) as http:
            for _ in range(200):
                if self._proc.poll() is not None:
                    raise RuntimeError(f"moto_server exited with {self._proc.returncode}")
                try:
                    await http.get(f"{self.endpoint_url}/moto-api/", timeout=0.5)
                    return self
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
        await self.__aexit__(None, None, None)
        raise RuntimeError("moto_server did not start within 10 s")

    async def reset(self) -> None:
        """Forget every resource (moto's own reset API): one emulator can serve many tests,
        each starting from nothing, without paying its ~2 s start each time."""
        async with httpx.AsyncClient(verify=tls_context()) as http:
            (await http.post(f"{self.endpoint_url}/moto-api/reset", timeout=10)).raise_for_status()

    async def __aexit__(self, *exc: object) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                await asyncio.to_thread(self._proc.wait, 10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None
