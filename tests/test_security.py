"""Redis ACL users (daemon, operator, watcher), credentials in REDIS_URL, and TLS, for real."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import trustme
from redis.exceptions import NoPermissionError

import event_bus.system  # noqa: F401  (registers the system events)
from event_bus import Channels, JournalEntry, JournalReader, RedisEventBus, utc_now
from event_bus.acl import acl_rules
from event_bus.embedded import EmbeddedRedis, free_port
from event_bus.health import HeartbeatPublisher, read_heartbeats
from event_bus.system import ControlCommand, Heartbeat
from execution.state import RedisExecutionState
from ibsim import SimConfig, Simulator
from market_data.model import Bar, Tick
from strategy.model import TradeSignal
from tests.helpers import eventually
from tests.test_cli import MAIN, _environment, run_main_async

SYMBOLS = ("AAPL", "MSFT", "SPY")
MANUAL_BUY = (
    '{"type":"TradeSignal","symbol":"AAPL","action":"BUY","quantity":10,"order_type":"MKT"}'
)


@dataclass(frozen=True)
class AclServer:
    """A Redis with the three users; `url(role)` carries that user's name and password."""

    host: str
    port: int
    passwords: dict[str, str]
    scheme: str = "redis"
    query: str = ""

    def url(self, role: str) -> str:
        password = self.passwords[role]
        return f"{self.scheme}://{role}:{password}@{self.host}:{self.port}/0{self.query}"


async def _create_users(admin: aioredis.Redis, channels: Channels) -> dict[str, str]:
    passwords = {role: f"pw-{role}-{uuid.uuid4().hex}" for role in ("daemon", "operator")}
    passwords["watcher"] = f"pw-watcher-{uuid.uuid4().hex}"
    for role, rules in acl_rules(channels).items():
        await admin.execute_command("ACL", "SETUSER", role, "reset", "on", f">{passwords[role]}")
        await admin.execute_command("ACL", "SETUSER", role, *rules)
    return passwords


@pytest.fixture
def channels() -> Channels:
    """The default prefix: this test's Redis server is its own."""
    return Channels("trading")


@pytest.fixture
async def acl_server(embedded_redis: EmbeddedRedis, channels: Channels) -> AclServer:
    """The embedded Redis 6.2 of this test, with the daemon, operator and watcher users."""
    admin = aioredis.Redis(port=embedded_redis.port)
    try:
        passwords = await _create_users(admin, channels)
    finally:
        await admin.aclose()
    return AclServer("127.0.0.1", embedded_redis.port, passwords)


def _connect(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


async def _exercise_daemon_bus(url: str, channels: Channels) -> None:
    """Everything the daemon does on Redis, as the user in `url`; asserts it all worked."""
    bus = RedisEventBus.from_url(url, channels=channels)
    received: list[object] = []

    async def keep(event: object) -> None:
        received.append(event)

    patterns = [
        channels.control,
        channels.instrument("tick", "*"),
        channels.instrument("signal", "*"),
        channels.instrument("bar", "AAPL"),
        channels.instrument("fill", "AAPL"),
    ]
    for pattern in patterns:
        await bus.subscribe(pattern, keep)
    stored: list[JournalEntry] = []

    async def store(entries: list[JournalEntry]) -> None:
        stored.extend(entries)

    reader = JournalReader(
        bus.redis, group="storage", consumer="s1", handler=store, channels=channels, block_ms=50
    )
    heartbeat = HeartbeatPublisher(bus, "storage", interval=0.2)
    state = RedisExecutionState(bus.redis, channels)
    await bus.start()
    await bus.redis.xadd(channels.journal, {"channel": "nowhere", "event": "not an event"})
    events = [
        Tick(symbol="AAPL", bid=1.0, ask=1.1, last=1.05),
        Bar(
            symbol="AAPL",
            start=utc_now(),
            seconds=5,
            open=1.0,
            high=1.0,
            low=1.0,
            close=1.0,
            volume=9.0,
        ),
        TradeSignal(symbol="AAPL", action="BUY", quantity=1, strategy="test"),
        ControlCommand(command="halt", reason="acl test"),
    ]
    try:
        await heartbeat.start()
        for event in events:
            await bus.publish(event)
        await eventually(lambda: len(received) == len(events), message="every event delivered")
        while len(_not_heartbeats(stored)) < len(events):
            await reader.read_once()
        # XINFO, storage's watch of the journal, is allowed (None: a Redis before 7.0)
        assert await reader.dropped_unread() in ((0, True), None)
        assert (reader.dead_lettered, len(await bus.redis.xrange(channels.dead_letter))) == (1, 1)
        assert await state.claim("signal-1", "placed") is True
        await state.set_fill_state("execution-1", "published")
        await state.set_halt(b"halted")
        assert (await state.fill_state("execution-1"), await state.halt()) == (
            "published",
            b"halted",
        )
        await state.set_halt(None)
        await eventually(lambda: _beats(bus.redis, channels), message="the heartbeat key readable")
    finally:
        await state.close()
        await heartbeat.stop()
        await bus.stop()
    assert sorted(received, key=repr) == sorted(events, key=repr)
    assert _not_heartbeats(stored) == events


def _not_heartbeats(entries: list[JournalEntry]) -> list[object]:
    return [entry.event for entry in entries if not isinstance(entry.event, Heartbeat)]


async def _beats(redis: aioredis.Redis, channels: Channels) -> bool:
    beats = await read_heartbeats(redis, channels.heartbeat_key("*"), RedisEventBus(redis).codec)
    return [beat.module for beat in beats] == ["storage"]


async def test_the_daemon_user_runs_the_bus_journal_heartbeats_and_state(
    acl_server: AclServer, channels: Channels
) -> None:
    """With only its ACL rules, the daemon publishes, subscribes, consumes and keeps state."""
    await _exercise_daemon_bus(acl_server.url("daemon"), channels)


async def test_the_watcher_reads_but_redis_refuses_its_publish_and_writes(
    acl_server: AclServer, channels: Channels
) -> None:
    """The watcher may PSUBSCRIBE and read the journal; PUBLISH, EVALSHA and SET are NOPERM."""
    watcher = _connect(acl_server.url("watcher"))
    operator = _connect(acl_server.url("operator"))
    pubsub = watcher.pubsub()
    try:
        await pubsub.psubscribe(channels.everything)
        assert (await pubsub.get_message(timeout=5))["type"] == "psubscribe"
        await operator.xadd(channels.journal, {"channel": "x", "event": "y"})
        assert [fields for _, fields in await watcher.xrange(channels.journal)] == [
            {b"channel": b"x", b"event": b"y"}
        ]
        refusals = {}
        for name, attempt in {
            "signal": watcher.publish(channels.instrument("signal", "AAPL"), MANUAL_BUY),
            "control": watcher.publish(channels.control, '{"type":"ControlCommand"}'),
            "script": watcher.eval("return redis.call('PUBLISH', KEYS[1], 'x')", 0),
            "kill switch": watcher.set(channels.state_key("halt"), "x"),
        }.items():
            with pytest.raises(NoPermissionError) as refused:
                await attempt
            refusals[name] = _refused_command(str(refused.value))
        assert refusals == {
            "signal": "publish",
            "control": "publish",
            "script": "eval",
            "kill switch": "set",
        }
        # The operator's signal still reaches the watcher: subscribing was never the problem.
        assert await operator.publish(channels.instrument("signal", "AAPL"), MANUAL_BUY) == 1
        message = await pubsub.get_message(timeout=5)
        assert (message["type"], message["data"]) == ("pmessage", MANUAL_BUY.encode())
    finally:
        await pubsub.aclose()
        await watcher.aclose()
        await operator.aclose()


def _refused_command(message: str) -> str:
    """The command a NOPERM reply names (Redis 6.2 and 7 word the rest differently)."""
    found = re.search(r"no permissions to run the '([a-z|]+)' command", message)
    return found.group(1) if found else message


async def test_each_user_reaches_only_its_own_keys_and_channels(
    acl_server: AclServer, channels: Channels
) -> None:
    """Outside the prefix's keys and channels, and for what its role lacks, Redis says NOPERM."""
    daemon, operator = _connect(acl_server.url("daemon")), _connect(acl_server.url("operator"))
    try:
        for attempt in (
            daemon.get("someone-else:key"),
            daemon.publish("someone-else:channel", "x"),
            daemon.flushall(),
            daemon.execute_command("ACL", "SETUSER", "daemon", "+@all"),
            operator.set(channels.state_key("signal:x"), "x"),
            operator.xreadgroup("storage", "me", {channels.journal: ">"}),
            operator.execute_command("CONFIG", "SET", "requirepass", "x"),
        ):
            with pytest.raises(NoPermissionError):
                await attempt
        assert await operator.publish(channels.control, "x") == 0
    finally:
        await daemon.aclose()
        await operator.aclose()


async def test_run_and_the_operator_tools_work_with_acl_users(
    acl_server: AclServer, channels: Channels, tmp_path: Path
) -> None:
    """`run` as the daemon trades a manual signal from the operator; halt, status, tail work."""
    async with Simulator(SimConfig(port=0, speed=10.0)) as sim:
        settings = {
            "IB_PORT": str(sim.port),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'trading.db'}",
            "SYMBOLS": ",".join(SYMBOLS),
            "LOG_LEVEL": "WARNING",
        }
        daemon = await asyncio.create_subprocess_exec(
            sys.executable,
            str(MAIN),
            "run",
            cwd=tmp_path,
            env=_environment(REDIS_URL=acl_server.url("daemon"), **settings),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        as_watcher = {**settings, "REDIS_URL": acl_server.url("watcher")}
        as_operator = {**settings, "REDIS_URL": acl_server.url("operator")}
        try:

            async def execution_ready() -> bool:
                result = await run_main_async(tmp_path, "status", "--json", **as_watcher)
                report = json.loads(result.stdout)
                execution = report["modules"].get("execution", {}).get("detail", {})
                return result.returncode == 0 and execution.get("ib") == "ready"

            await eventually(execution_ready, timeout=20, interval=0.3, message="all alive")
            operator = _connect(acl_server.url("operator"))
            await operator.publish(channels.instrument("signal", "AAPL"), MANUAL_BUY)
            await operator.aclose()
            await eventually(lambda: sim.positions() == {"AAPL": 10.0}, timeout=15)
            halt = await run_main_async(tmp_path, "halt", "--reason", "acl", **as_operator)
            assert halt.returncode == 0, halt.stderr
            status = await run_main_async(tmp_path, "status", "--json", **as_watcher)
            assert json.loads(status.stdout)["halt"]["reason"] == "acl"
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(daemon.communicate(), 25)
    log = stderr.decode()
    assert (daemon.returncode, "NOPERM" in log, "no permissions" in log) == (0, False, False), log


async def test_a_wrong_password_is_logged_without_the_password(
    acl_server: AclServer, tmp_path: Path
) -> None:
    """`status`, `halt` and `run` with a wrong password fail loudly and never print it."""
    secret = "not-the-password-" + uuid.uuid4().hex
    url = f"redis://daemon:{secret}@127.0.0.1:{acl_server.port}/0"
    status, halt, run_log = await asyncio.gather(
        run_main_async(tmp_path, "status", REDIS_URL=url),
        run_main_async(tmp_path, "halt", REDIS_URL=url),
        _run_until_logged(tmp_path, url, "journal_read_failed"),
    )
    outputs = {"status": status.stdout + status.stderr, "halt": halt.stdout + halt.stderr}
    outputs["run"] = run_log
    assert {name: secret in text for name, text in outputs.items()} == dict.fromkeys(outputs, False)
    refused = "invalid username-password pair"
    assert {name: refused in text for name, text in outputs.items()} == dict.fromkeys(outputs, True)
    assert (status.returncode, halt.returncode) == (1, 1)
    assert "daemon:***@" in run_log


async def _run_until_logged(workdir: Path, url: str, event: str) -> str:
    """`main.py run --modules storage` until it logs `event`; everything it logged."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MAIN),
        "run",
        "--modules",
        "storage",
        cwd=workdir,
        env=_environment(REDIS_URL=url, DATABASE_URL=f"sqlite:///{workdir / 't.db'}"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    lines = []
    try:
        async with asyncio.timeout(20):
            while event not in (line := (await process.stderr.readline()).decode()):
                assert line, "run ended before logging " + event
                lines.append(line)
            lines.append(line)
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), 20)
    return "".join(lines) + (rest or b"").decode()


# TLS


def _tls_redis_server() -> str | None:
    """A `redis-server` on PATH built with TLS (Debian's is), else None."""
    path = shutil.which("redis-server")
    if path is None:
        return None
    # The first directive it rejects tells: `tls-port` without TLS, else our made-up one.
    probe = subprocess.run(
        [path, "--tls-port", "0", "--made-up-directive", "0"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return None if "'tls-port" in probe.stdout + probe.stderr else path


@contextlib.asynccontextmanager
async def _tls_terminator(context: ssl.SSLContext, backend_port: int) -> AsyncIterator[int]:
    """A TLS front for a plain Redis, for machines whose Redis has no TLS built in."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        backend_r, backend_w = await asyncio.open_connection("127.0.0.1", backend_port)
        await asyncio.gather(pipe(client_r, backend_w), pipe(backend_r, client_w))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
async def tls_server(
    tmp_path: Path, embedded_redis: EmbeddedRedis, channels: Channels
) -> AsyncIterator[AclServer]:
    """A TLS-only Redis with the ACL users: Redis's own TLS where built in, else a TLS front."""
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = (tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem"))
    authority.cert_pem.write_to_path(str(ca_file))
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    query = f"?ssl_ca_certs={ca_file}"
    binary = _tls_redis_server()
    if binary is None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        admin = aioredis.Redis(port=embedded_redis.port)
        passwords = await _create_users(admin, channels)
        await admin.aclose()
        async with _tls_terminator(context, embedded_redis.port) as port:
            yield AclServer("127.0.0.1", port, passwords, "rediss", query)
        return
    port = free_port()
    # Redis 7 has no plain port here: only TLS clients with a certificate we made get in.
    arguments = ["--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", ""]
    arguments += ["--dir", str(tmp_path), "--tls-auth-clients", "no"]
    arguments += ["--tls-ca-cert-file", str(ca_file), "--tls-cert-file", str(cert_file)]
    process = subprocess.Popen(  # noqa: ASYNC220  (as EmbeddedRedis: outlives no loop)
        [binary, *arguments, "--tls-key-file", str(key_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        admin = aioredis.Redis(port=port, ssl=True, ssl_ca_certs=str(ca_file))
        await eventually(lambda: _answers(admin), timeout=10, message="TLS Redis up")
        passwords = await _create_users(admin, channels)
        await admin.aclose()
        yield AclServer("127.0.0.1", port, passwords, "rediss", query)
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _answers(client: aioredis.Redis) -> bool:
    try:
        return bool(await client.ping())
    except (OSError, aioredis.ConnectionError):
        return False


async def test_the_bus_runs_over_tls_with_an_acl_user(
    tls_server: AclServer, channels: Channels, tmp_path: Path
) -> None:
    """rediss:// with the CA in the URL: the whole daemon bus, and `status`, over TLS."""
    assert tls_server.url("daemon").startswith("rediss://daemon:")
    await _exercise_daemon_bus(tls_server.url("daemon"), channels)
    plain = f"redis://127.0.0.1:{tls_server.port}/0"
    refused = await run_main_async(tmp_path, "status", REDIS_URL=plain)
    status = await run_main_async(tmp_path, "status", REDIS_URL=tls_server.url("watcher"))
    assert (refused.returncode, status.returncode) == (1, 1), (
        status.stderr
    )  # no module is alive, both ways
    assert ("status_failed" in refused.stderr, status.stdout.splitlines()[:1]) == (
        True,
        ["trading: allowed"],
    ), status.stderr


def test_acl_rules_start_from_nothing_and_list_subscribed_patterns_literally() -> None:
    """Every role resets keys, channels and commands first; PSUBSCRIBE patterns are literal."""
    rules = acl_rules(Channels("trading"))
    assert {role: tuple(role_rules[:3]) for role, role_rules in rules.items()} == dict.fromkeys(
        ("daemon", "operator", "watcher"), ("resetkeys", "resetchannels", "-@all")
    )
    assert [rule for rule in rules["daemon"] if rule.startswith("&")] == [
        "&trading:tick:*",
        "&trading:bar:*",
        "&trading:signal:*",
        "&trading:order:*",
        "&trading:fill:*",
        "&trading:system:*",
        "&trading:control",
    ]
    assert {role: "+publish" in role_rules for role, role_rules in rules.items()} == {
        "daemon": True,
        "operator": True,
        "watcher": False,
    }
