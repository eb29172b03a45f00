"""The command line as a user runs it: `python main.py ...` in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from config import Settings
from event_bus import Channels, Codec
from event_bus.embedded import free_port
from event_bus.system import ControlCommand

MAIN = Path(__file__).resolve().parent.parent / "main.py"
COMMAND_TIMEOUT = 30.0


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def _setting_names() -> list[str]:
    names = []
    for section_field in Settings.model_fields.values():
        section: Any = section_field.annotation
        prefix = section.model_config.get("env_prefix", "")
        names += [(prefix + name).upper() for name in section.model_fields]
    return names


def _environment(**settings: str) -> dict[str, str]:
    """The current environment without any setting, plus JSON logs and `settings`."""
    env = {key: value for key, value in os.environ.items() if key not in _setting_names()}
    return {**env, "LOG_FORMAT": "json", "USER": "tester", **settings}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty working directory, so no developer's .env is read."""
    return tmp_path


def run_main(workdir: Path, *args: str, **settings: str) -> Result:
    completed = subprocess.run(
        [sys.executable, str(MAIN), *args],
        cwd=workdir,
        env=_environment(**settings),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


async def run_main_async(workdir: Path, *args: str, **settings: str) -> Result:
    """As run_main, without blocking the event loop (a subscriber is listening meanwhile)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MAIN),
        *args,
        cwd=workdir,
        env=_environment(**settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


def test_help_lists_the_commands(workdir: Path) -> None:
    """`main.py --help` exits 0 and names every command."""
    result = run_main(workdir, "--help")
    assert (result.returncode, result.stderr) == (0, "")
    for command in ("run", "tail", "halt", "resume"):
        assert f"\n    {command} " in result.stdout


def test_help_of_a_command(workdir: Path) -> None:
    """`main.py halt --help` exits 0 and shows its flag."""
    result = run_main(workdir, "halt", "--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert "--reason REASON" in result.stdout


def test_a_bad_setting_exits_2_with_one_line_naming_it(workdir: Path) -> None:
    """TRADING_MODE=bogus stops start-up: exit 2, one stderr line naming TRADING_MODE."""
    result = run_main(workdir, "run", TRADING_MODE="bogus")
    assert result == Result(
        2,
        "",
        "main.py: bad setting: TRADING_MODE: Input should be 'paper' or 'live' (got 'bogus')\n",
    )


def test_a_bad_setting_in_dot_env_exits_2(workdir: Path) -> None:
    """A bad value in ./.env is reported like one in the environment."""
    (workdir / ".env").write_text("IB_PORT=99999\n")
    result = run_main(workdir, "halt")
    assert result == Result(
        2,
        "",
        "main.py: bad setting: IB_PORT: Input should be less than or equal to 65535"
        " (got '99999')\n",
    )


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (["run", "--bogus"], "main.py: error: unrecognized arguments: --bogus\n"),
        (
            ["frobnicate"],
            "main.py: error: argument COMMAND: invalid choice: 'frobnicate' (choose from"
            " 'run', 'tail', 'demo', 'status', 'replay', 'db', 'sim', 'halt', 'resume')\n",
        ),
        ([], "main.py: error: the following arguments are required: COMMAND\n"),
        (["halt", "--reason"], "main.py halt: error: argument --reason: expected one argument\n"),
    ],
    ids=["unknown-flag", "unknown-command", "no-command", "flag-without-value"],
)
def test_bad_usage_exits_2_with_one_line(workdir: Path, args: list[str], stderr: str) -> None:
    """A bad flag or command exits 2 with one line saying what is wrong, no usage dump."""
    assert run_main(workdir, *args) == Result(2, "", stderr)


async def _subscribe(client: aioredis.Redis, channel: str) -> aioredis.client.PubSub:
    """A pub/sub connection on `channel`, returned once the server confirms the subscription."""
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    confirmation = await pubsub.get_message(timeout=5.0)
    assert confirmation is not None
    assert confirmation["type"] == "subscribe"
    return pubsub


async def _next_message(pubsub: aioredis.client.PubSub, timeout: float = 5.0) -> bytes:
    """The data of the next published message, waiting at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if message is not None:
            return message["data"]  # type: ignore[no-any-return]
    raise AssertionError(f"no message within {timeout} s")


@pytest.fixture
async def client(redis_url: str) -> Any:
    redis_client = aioredis.Redis.from_url(redis_url)
    try:
        yield redis_client
    finally:
        await redis_client.aclose()


@pytest.mark.integration
async def test_halt_records_the_state_and_tells_the_daemon(
    workdir: Path, redis_url: str, channels: Channels, clean_keys: None, client: aioredis.Redis
) -> None:
    """`halt --reason x` stores the command under the halt key and publishes it on control."""
    codec = Codec()
    pubsub = await _subscribe(client, channels.control)
    try:
        result = await run_main_async(
            workdir, "halt", "--reason", "x", REDIS_URL=redis_url, CHANNEL_PREFIX=channels.prefix
        )
        assert (result.returncode, result.stdout) == (0, ""), result.stderr
        published = codec.decode(await _next_message(pubsub))
    finally:
        await pubsub.aclose()
    stored = codec.decode(await client.get(channels.state_key("halt")))
    expected = ControlCommand(
        id=stored.id,
        ts=stored.ts,
        command="halt",
        reason="x",
        issued_by=f"tester@{socket.gethostname()}",
    )
    assert (stored, published) == (expected, expected)
    assert await client.xlen(channels.journal) == 1
    [log_line] = [json.loads(line) for line in result.stderr.splitlines()]
    assert {key: log_line[key] for key in ("event", "command", "reason", "level")} == {
        "event": "kill_switch_sent",
        "command": "halt",
        "reason": "x",
        "level": "info",
    }


@pytest.mark.integration
async def test_resume_clears_the_state_and_tells_the_daemon(
    workdir: Path, redis_url: str, channels: Channels, clean_keys: None, client: aioredis.Redis
) -> None:
    """`resume` deletes the halt key and publishes a resume command on control."""
    codec = Codec()
    halt_key = channels.state_key("halt")
    await client.set(halt_key, codec.encode(ControlCommand(command="halt", reason="earlier")))
    pubsub = await _subscribe(client, channels.control)
    try:
        result = await run_main_async(
            workdir, "resume", REDIS_URL=redis_url, CHANNEL_PREFIX=channels.prefix
        )
        assert result.returncode == 0, result.stderr
        published = codec.decode(await _next_message(pubsub))
    finally:
        await pubsub.aclose()
    assert await client.exists(halt_key) == 0
    expected = ControlCommand(
        id=published.id,
        ts=published.ts,
        command="resume",
        issued_by=f"tester@{socket.gethostname()}",
    )
    assert published == expected


def test_halt_without_redis_exits_1_with_a_log_line_hiding_the_password(workdir: Path) -> None:
    """With Redis unreachable, `halt` exits 1 and logs why, never showing the URL's password."""
    url = f"redis://app:hunter2@127.0.0.1:{free_port()}/0"
    result = run_main(workdir, "halt", "--reason", "x", REDIS_URL=url)
    assert (result.returncode, result.stdout) == (1, "")
    assert "hunter2" not in result.stderr
    [log_line] = [json.loads(line) for line in result.stderr.splitlines()]
    assert {key: log_line[key] for key in ("event", "command", "redis", "level")} == {
        "event": "kill_switch_failed",
        "command": "halt",
        "redis": url.replace("hunter2", "***"),
        "level": "error",
    }
    assert "connecting to 127.0.0.1" in log_line["error"]


async def test_sim_command_serves_ib_async_and_stops_on_sigterm(workdir: Path) -> None:
    """`main.py sim` serves a real ib_async client; SIGTERM stops it with exit code 0."""
    from ib_async import IB

    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MAIN),
        "sim",
        "--port",
        str(port),
        "--account",
        "DU7654321",
        cwd=workdir,
        env=_environment(LOG_FORMAT="json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        while True:
            line = await asyncio.wait_for(process.stdout.readline(), 15)
            assert line, "the simulator exited before it was ready"
            if json.loads(line).get("event") == "simulator_ready":
                break
        ib = IB()
        await ib.connectAsync("127.0.0.1", port, clientId=3, timeout=5)
        assert ib.managedAccounts() == ["DU7654321"]
        ib.disconnect()
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0


def test_live_mode_without_a_live_account_exits_3_before_connecting(workdir: Path) -> None:
    """TRADING_MODE=live with no LIVE_ACCOUNT, or a paper one: the settings alone refuse it,
    before Redis or IB is asked anything (neither answers here)."""
    for live_account, said in (("", "needs LIVE_ACCOUNT"), ("DU1111111", "is a paper account")):
        result = run_main(
            workdir,
            "run",
            REDIS_URL="redis://127.0.0.1:1/0",
            IB_PORT="1",
            TRADING_MODE="live",
            LIVE_ACCOUNT=live_account,
        )
        assert result.returncode == 3, result.stderr[-2000:]
        [line] = [json.loads(text) for text in result.stderr.splitlines()]
        assert line["event"] == "trading_refused_by_guard" and said in line["reason"]


async def test_paper_mode_against_a_live_account_exits_3(
    workdir: Path, redis_url: str, channels: Channels, clean_keys: None
) -> None:
    """`run` in paper mode, connected to a non-DU account: refuses to trade, exit code 3."""
    from ibsim import SimConfig, Simulator

    async with Simulator(SimConfig(port=0, account="U1234567")) as sim:
        result = await run_main_async(
            workdir,
            "run",
            "--modules",
            "execution",
            REDIS_URL=redis_url,
            CHANNEL_PREFIX=channels.prefix,
            IB_PORT=str(sim.port),
        )
    assert result.returncode == 3, result.stderr[-2000:]
    refusal = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if '"trading_refused_by_guard"' in line
    ]
    assert len(refusal) == 1 and "U1234567" in refusal[0]["reason"]
