"""One ib_async connection to TWS/IB Gateway that reconnects forever and says what happens."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from ib_async import IB

from broker.framing import ReadStats, read_stats, unread_bytes, use_linear_reader
from broker.model import ConnectivityChanged, ConnectivityState
from config import IBSettings
from event_bus import Event
from event_bus.backoff import Backoff
from event_bus.tasks import cancel_and_wait

log = structlog.get_logger()

# IB message code -> the connectivity state it announces (shared/IB_PROTOCOL.md).
CONNECTIVITY_CODES: dict[int, ConnectivityState] = {
    1100: "ib_link_lost",
    2110: "ib_link_lost",
    1101: "ib_link_restored",
    1102: "ib_link_restored",
    2103: "farm_broken",
    2105: "farm_broken",
    2104: "farm_ok",
    2106: "farm_ok",
    2158: "farm_ok",
}
CLIENT_ID_IN_USE = 326
MARKET_DATA_FARM_BROKEN, MARKET_DATA_FARM_OK = 2103, 2104

ConnectHook = Callable[[IB], Awaitable[None]]
RestoreHook = Callable[[str], Awaitable[None]]
ErrorListener = Callable[[int, int, str], None]  # (code, request id, message)


class Publisher(Protocol):
    async def publish(self, event: Event) -> None: ...


class IBConnection:
    """Keeps `self.ib` connected, with exponential backoff and jitter between attempts.

    Publishes `ConnectivityChanged` on `trading:system:connectivity`, in the order things
    happened. Owners register:
    - connect hooks, run after every (re)connection, to restore what ib_async forgot (it wipes
      tickers, trades and subscriptions whenever the socket closes);
    - restore hooks, run when IB says data may have been lost with the socket still up (1101,
      1102, and 2104 after 2103), with the reason;
    - error listeners, called for every IB error message (e.g. 10182 for one request).
    """

    def __init__(
        self,
        settings: IBSettings,
        bus: Publisher,
        *,
        client: str,
        client_id: int,
        ib: IB | None = None,
        backoff_cap_seconds: float | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.client_id = client_id
        self.ib = ib or IB()
        use_linear_reader(self.ib)
        self._bus = bus
        cap = backoff_cap_seconds or settings.reconnect_cap_seconds
        self._backoff = Backoff(min(0.25, cap), cap)
        self._connect_hooks: list[ConnectHook] = []
        self._restore_hooks: list[RestoreHook] = []
        self._error_listeners: list[ErrorListener] = []
        self._events: asyncio.Queue[ConnectivityChanged] = asyncio.Queue()
        self._socket_closed = asyncio.Event()
        self._connected = asyncio.Event()
        self._link_up = True  # False between 1100 and 1101/1102
        self._farm_broken = False  # a 2103 not yet followed by 2104
        self._client_id_refused = False
        self._tasks: list[asyncio.Task[None]] = []
        self._restore_tasks: set[asyncio.Task[None]] = set()
        self.ib.disconnectedEvent += self._on_disconnected
        self.ib.errorEvent += self._on_error

    # Owners' registrations

    def add_connect_hook(self, hook: ConnectHook) -> None:
        self._connect_hooks.append(hook)

    def add_restore_hook(self, hook: RestoreHook) -> None:
        self._restore_hooks.append(hook)

    def add_error_listener(self, listener: ErrorListener) -> None:
        self._error_listeners.append(listener)

    # Lifecycle

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._keep_connected(), name=f"ib:{self.client}"),
                asyncio.create_task(self._publish_events(), name=f"ib-events:{self.client}"),
            ]

    async def stop(self) -> None:
        """Disconnect cleanly; the last connectivity events are published first."""
        if not self._tasks:
            return
        keeper, publisher = self._tasks
        await cancel_and_wait(keeper)
        was_connected = self.ib.isConnected()
        self.ib.disconnect()
        if was_connected:
            self._emit("disconnected", message="stopped")
        try:
            await asyncio.wait_for(self._events.join(), 5.0)
        except TimeoutError:
            log.error("ib_connectivity_events_not_published", client=self.client)
        await cancel_and_wait(publisher, *self._restore_tasks)
        self._tasks = []

    def vital_tasks(self) -> list[asyncio.Task[None]]:
        """Background tasks that must not end while this runs; the daemon watches them."""
        return list(self._tasks)

    @property
    def connected(self) -> bool:
        """Socket up and synchronised."""
        return self._connected.is_set() and self.ib.isConnected()

    def unread_bytes(self) -> int | None:
        """Bytes TWS sent that the kernel holds and this process has not read yet (None when
        not connected): where a daemon short of CPU falls behind, before any queue of its own
        sees it. Past `framing.CATCH_UP_BYTES` the reader conflates what it reads."""
        return unread_bytes(getattr(self.ib.client.conn, "transport", None))

    def read_stats(self) -> ReadStats:
        """The reader's figures: reads, and the catch-up batches that conflated a backlog."""
        return read_stats(self.ib)

    @property
    def ready_to_trade(self) -> bool:
        """Connected, and TWS has not reported its link to IB lost (1100)."""
        return self.connected and self._link_up

    async def wait_connected(self, timeout: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    # The reconnect loop

    async def _keep_connected(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            if await self._try_connect(attempt):
                attempt = 0
                self._backoff.reset()
                await self._socket_closed.wait()
                self._connected.clear()
                self._emit("disconnected", message="socket closed; reconnecting")
            await asyncio.sleep(self._backoff.next_delay())

    async def _try_connect(self, attempt: int) -> bool:
        settings = self.settings
        self._client_id_refused = False
        self._socket_closed.clear()
        log.info(
            "ib_connecting",
            client=self.client,
            host=settings.host,
            port=settings.port,
            client_id=self.client_id,
            attempt=attempt,
        )
        try:
            await self.ib.connectAsync(
                settings.host,
                settings.port,
                clientId=self.client_id,
                timeout=settings.connect_timeout_seconds,
            )
        except (OSError, TimeoutError, ConnectionError) as error:
            self._connect_failed(attempt, error)
            return False
        self._link_up, self._farm_broken = True, False
        self._connected.set()
        self._emit("connected", message=f"accounts {','.join(self.ib.managedAccounts())}")
        await self._run_connect_hooks()
        return True

    def _connect_failed(self, attempt: int, error: BaseException) -> None:
        if self._client_id_refused:
            log.error(
                "ib_client_id_in_use",
                client=self.client,
                client_id=self.client_id,
                hint="another API client holds this clientId; set another IB_CLIENT_ID",
            )
            return
        reason = str(error) or type(error).__name__
        log.warning("ib_connect_failed", client=self.client, attempt=attempt, error=reason)
        self._emit("connect_failed", message=reason, attempt=attempt)

    async def _run_connect_hooks(self) -> None:
        for hook in self._connect_hooks:
            try:
                await hook(self.ib)
            except Exception:
                log.exception(
                    "ib_connect_hook_failed",
                    client=self.client,
                    hook=getattr(hook, "__qualname__", repr(hook)),
                )

    async def _run_restore_hooks(self, reason: str) -> None:
        for hook in self._restore_hooks:
            try:
                await hook(reason)
            except Exception:
                log.exception("ib_restore_hook_failed", client=self.client, reason=reason)

    # ib_async callbacks (plain functions: they only record and schedule)

    def _on_disconnected(self) -> None:
        self._socket_closed.set()

    def _on_error(self, request_id: int, code: int, message: str, contract: Any = None) -> None:
        for listener in self._error_listeners:
            listener(code, request_id, message)
        if code == CLIENT_ID_IN_USE:
            self._client_id_refused = True
            self._emit("client_id_in_use", code=code, message=message)
            return
        state = CONNECTIVITY_CODES.get(code)
        if state is None:
            return
        self._emit(state, code=code, message=message)
        reason = self._restore_reason(code)
        if reason is not None:
            task = asyncio.get_running_loop().create_task(self._run_restore_hooks(reason))
            self._restore_tasks.add(task)
            task.add_done_callback(self._restore_tasks.discard)

    def _restore_reason(self, code: int) -> str | None:
        """Track IB's link and data farm; the reason to restore data, if this code gives one."""
        if code in (1100, 2110):
            self._link_up = False
        elif code in (1101, 1102):
            self._link_up = True
            return f"ib_link_restored_{code}"
        elif code == MARKET_DATA_FARM_BROKEN:
            self._farm_broken = True
        elif code == MARKET_DATA_FARM_OK and self._farm_broken:
            self._farm_broken = False
            return "market_data_farm_ok"
        return None

    def _emit(
        self,
        state: ConnectivityState,
        *,
        code: int | None = None,
        message: str = "",
        attempt: int | None = None,
    ) -> None:
        self._events.put_nowait(
            ConnectivityChanged(
                client=self.client,
                client_id=self.client_id,
                state=state,
                code=code,
                message=message,
                attempt=attempt,
            )
        )

    async def _publish_events(self) -> None:
        while True:
            event = await self._events.get()
            try:
                log.info(
                    "ib_connectivity",
                    client=self.client,
                    state=event.state,
                    code=event.code,
                    message=event.message,
                )
                await self._bus.publish(event)
            finally:
                self._events.task_done()
