"""The processes a drill drives: a Redis server it can kill, and the daemon as `main.py run`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from config import Settings
from event_bus.embedded import EmbeddedRedis

MAIN = Path(__file__).resolve().parent.parent / "main.py"


class DrillRedis(EmbeddedRedis):
    """An embedded Redis with persistence on, which a drill restarts keeping its data or not."""

    def __init__(self, directory: Path) -> None:
        super().__init__(persistent=True, directory=directory)

    async def restart_keeping_data(self) -> None:
        """SIGKILL, then start again from the append-only file (fsync'd on every write)."""
        await self.restart()

    async def restart_losing_data(self) -> None:
        """SIGKILL, delete what it persisted, start empty: the journal and all state are gone."""
        self.kill()
        for path in self.directory.iterdir():
            if path.name != "redis.log":
                if path.is_dir():
                    for inner in path.iterdir():
                        inner.unlink()
                    path.rmdir()
                else:
                    path.unlink()
        await self.start()


class DaemonProcess:
    """`python main.py run --modules ...` in a subprocess, its log (JSON lines) in a file."""

    def __init__(
        self,
        name: str,
        modules: Sequence[str],
        settings: Mapping[str, str],
        workdir: Path,
    ) -> None:
        self.name = name
        self.modules = tuple(modules)
        self.settings = dict(settings)
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.starts = 0
        self.unexpected_exits: list[int] = []  # exit codes of deaths we did not cause
        self._process: asyncio.subprocess.Process | None = None
        self._expected_exit = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        self.starts += 1
        self._expected_exit = False
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(MAIN),
                "run",
                "--modules",
                ",".join(self.modules),
                cwd=self.workdir,
                env=_environment(self.settings),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )

    def check_alive(self) -> None:
        """Record an exit nobody asked for (a crash); the drill reports it as a failure."""
        process = self._process
        if process is not None and process.returncode is not None and not self._expected_exit:
            self.unexpected_exits.append(process.returncode)
            self._expected_exit = True

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as a power cut or the OOM killer would."""
        self._signal(signal.SIGKILL)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP, expect_exit=False)

    def resume(self) -> None:
        self._signal(signal.SIGCONT, expect_exit=False)

    async def wait_killed(self, timeout: float = 10.0) -> None:
        if self._process is not None:
            await asyncio.wait_for(self._process.wait(), timeout)

    async def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM and wait for the graceful stop; its exit code (None if it had to be killed)."""
        process = self._process
        if process is None or process.returncode is not None:
            return process.returncode if process is not None else None
        self._expected_exit = True
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            return None

    def rss_bytes(self) -> int:
        """Resident memory of the daemon now (0 when not running)."""
        if not self.running or self.pid is None:
            return 0
        with contextlib.suppress(psutil.Error):
            return int(psutil.Process(self.pid).memory_info().rss)
        return 0

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def _signal(self, number: signal.Signals, *, expect_exit: bool = True) -> None:
        if self._process is not None and self._process.returncode is None:
            self._expected_exit = self._expected_exit or expect_exit
            self._process.send_signal(number)


async def run_command(settings: Mapping[str, str], workdir: Path, *args: str) -> int:
    """`python main.py ARGS` with the daemon's settings, as an operator runs it; its exit code
    (its log, JSON lines, goes to this process's stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(MAIN), *args, cwd=workdir, env=_environment(settings)
    )
    return await process.wait()


def _setting_names() -> set[str]:
    names = set()
    for section_field in Settings.model_fields.values():
        section: Any = section_field.annotation
        prefix = section.model_config.get("env_prefix", "")
        names |= {(prefix + name).upper() for name in section.model_fields}
    return names


def _environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This environment without any daemon setting (a developer's REDIS_URL...), plus ours."""
    ours = _setting_names()
    inherited = {key: value for key, value in os.environ.items() if key not in ours}
    return {**inherited, "LOG_FORMAT": "json", **settings}
