"""The IB connection manager against the simulator: it reconnects forever and says so."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from ib_async import IB, Stock

from broker.connection import IBConnection
from broker.model import ConnectivityChanged
from config import IBSettings
from event_bus import InMemoryEventBus
from ibsim import Simulator
from tests.helpers import eventually

ConnectionFactory = Callable[..., IBConnection]


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryEventBus]:
    memory = InMemoryEventBus()
    yield memory
    await memory.stop()


@pytest.fixture
async def make_connection(
    sim: Simulator, bus: InMemoryEventBus
) -> AsyncIterator[ConnectionFactory]:
    """Builds managers pointed at the simulator (fast backoff); stops them afterwards."""
    made: list[IBConnection] = []

    def factory(client_id: int = 7, port: int | None = None) -> IBConnection:
        settings = IBSettings(
            host="127.0.0.1",
            port=port or sim.port,
            client_id=client_id,
            connect_timeout_seconds=2.0,
        )
        connection = IBConnection(
            settings, bus, client="test", client_id=client_id, backoff_cap_seconds=0.5
        )
        made.append(connection)
        return connection

    yield factory
    for connection in made:
        await connection.stop()


def states(bus: InMemoryEventBus) -> list[str]:
    """The connectivity story, without the farm notices TWS sends at every connect."""
    return [e.state for e in connectivity(bus) if e.state != "farm_ok"]


def connectivity(bus: InMemoryEventBus) -> list[ConnectivityChanged]:
    return [e for e in bus.published if isinstance(e, ConnectivityChanged)]


async def test_connects_runs_hooks_and_publishes_connected(
    make_connection: ConnectionFactory, bus: InMemoryEventBus
) -> None:
    """On connect the hooks run with the IB object and `connected` is published."""
    connection = make_connection()
    seen: list[IB] = []

    async def hook(ib: IB) -> None:
        seen.append(ib)

    connection.add_connect_hook(hook)
    await connection.start()
    await connection.wait_connected(5)
    await eventually(lambda: states(bus) == ["connected"])
    assert seen == [connection.ib]
    assert connection.ready_to_trade
    [event] = [e for e in connectivity(bus) if e.state == "connected"]
    assert (event.client, event.client_id, event.message) == ("test", 7, "accounts DU0000001")


async def test_socket_drop_reconnects_and_reruns_hooks(
    sim: Simulator, make_connection: ConnectionFactory, bus: InMemoryEventBus
) -> None:
    """The simulator drops every socket: disconnected, then connected again, hooks run twice."""
    connection = make_connection()
    runs: list[int] = []

    async def hook(ib: IB) -> None:
        runs.append(len(runs))

    connection.add_connect_hook(hook)
    await connection.start()
    await connection.wait_connected(5)
    sim.drop_all_clients()
    await eventually(lambda: states(bus)[-1:] == ["connected"] and len(runs) == 2, timeout=10)
    assert states(bus) == ["connected", "disconnected", "connected"]


async def test_gateway_restart_window_is_retried_until_it_answers(
    sim: Simulator, make_connection: ConnectionFactory, bus: InMemoryEventBus
) -> None:
    """Connections refused for a while (a Gateway restart): attempts fail, then it reconnects."""
    connection = make_connection()
    await connection.start()
    await connection.wait_connected(5)
    sim.refuse_connections(1.5)
    sim.drop_all_clients()
    await eventually(lambda: "connect_failed" in states(bus), timeout=10)
    await eventually(lambda: states(bus)[-1:] == ["connected"] and connection.connected, timeout=15)
    observed = states(bus)
    assert observed[:2] == ["connected", "disconnected"]
    assert set(observed[2:-1]) == {"connect_failed"}


@pytest.mark.parametrize("code", [1101, 1102])
async def test_link_loss_blocks_trading_and_restore_runs_hooks(
    code: int, sim: Simulator, make_connection: ConnectionFactory, bus: InMemoryEventBus
) -> None:
    """1100 marks the link down (not ready to trade); 1101/1102 restores it and runs the hooks."""
    connection = make_connection()
    reasons: list[str] = []

    async def restore(reason: str) -> None:
        reasons.append(reason)

    connection.add_restore_hook(restore)
    await connection.start()
    await connection.wait_connected(5)
    sim.connectivity_lost(restored_code=code, after=0.5)
    await eventually(lambda: "ib_link_lost" in states(bus), timeout=5)
    assert not connection.ready_to_trade
    await eventually(lambda: reasons == [f"ib_link_restored_{code}"], timeout=5)
    assert connection.ready_to_trade
    codes = [e.code for e in connectivity(bus) if e.state.startswith("ib_link")]
    assert codes == [1100, code]


async def test_farm_blip_restores_only_after_a_break(
    sim: Simulator, make_connection: ConnectionFactory, bus: InMemoryEventBus
) -> None:
    """2104 at connect restores nothing; 2104 after 2103 asks the owners to restore data."""
    connection = make_connection()
    reasons: list[str] = []

    async def restore(reason: str) -> None:
        reasons.append(reason)

    connection.add_restore_hook(restore)
    await connection.start()
    await connection.wait_connected(5)
    sim.farm_blip(pause_seconds=0.3)
    await eventually(lambda: reasons == ["market_data_farm_ok"], timeout=5)
    farm = [(e.state, e.code) for e in connectivity(bus) if e.state.startswith("farm")]
    assert farm[-2:] == [("farm_broken", 2103), ("farm_ok", 2104)]


async def test_client_id_in_use_is_reported_and_retried(
    sim: Simulator,
    make_connection: ConnectionFactory,
    bus: InMemoryEventBus,
    connect_ib: Callable[..., object],
) -> None:
    """Another client holds the id: 326 is reported; once it leaves, the manager connects."""
    holder = await connect_ib(client_id=9)  # type: ignore[misc]
    connection = make_connection(client_id=9)
    await connection.start()
    await eventually(lambda: "client_id_in_use" in states(bus), timeout=10)
    assert not connection.connected
    holder.disconnect()  # type: ignore[attr-defined]
    await connection.wait_connected(15)
    assert states(bus)[-1] == "connected"


async def test_stop_disconnects_and_publishes_it(
    make_connection: ConnectionFactory, bus: InMemoryEventBus
) -> None:
    """A clean stop leaves the socket closed and says so last."""
    connection = make_connection()
    await connection.start()
    await connection.wait_connected(5)
    await connection.stop()
    assert not connection.ib.isConnected()
    assert states(bus) == ["connected", "disconnected"]


async def test_unread_bytes_counts_what_tws_sent_and_the_daemon_has_not_read(
    make_connection: ConnectionFactory,
) -> None:
    """While the socket is not read, what the simulator streams waits in the kernel and is
    counted; once reading resumes the count falls back. Not connected: unknown (None)."""
    connection = make_connection()
    assert connection.unread_bytes() is None
    await connection.start()
    await connection.wait_connected(5)
    ib = connection.ib
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    transport = ib.client.conn.transport
    ib.reqMktData(contract)
    transport.pause_reading()
    try:
        await eventually(lambda: (connection.unread_bytes() or 0) > 1_000, timeout=10)
    finally:
        transport.resume_reading()
    await eventually(lambda: (connection.unread_bytes() or 0) < 1_000, timeout=10)
    await connection.stop()
    assert connection.unread_bytes() is None
