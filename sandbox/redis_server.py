"""A dedicated, throwaway redis-server on a free port (never the machine's shared 6379)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile

from starters.ports import free_port


class RedisServer:
    """`async with RedisServer() as r: r.address` -> "127.0.0.1:PORT"; no persistence."""

    def __init__(self) -> None:
        self.port = 0
        self._proc: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if not exe:
            raise RuntimeError("redis-server not found (scripts/ensure-services.sh installs it)")
        self._dir = tempfile.TemporaryDirectory(prefix="codeblue-redis-")
        self.port = free_port()
        self._proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir.name],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}")
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return self
            except OSError:
                await asyncio.sleep(0.025)
        await self.__aexit__()
        raise RuntimeError("redis-server did not start within 5 s")

    async def __aexit__(self, *exc: object) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                await asyncio.to_thread(self._proc.wait, 10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
