"""Fills: each IB execution published once, with its commission, even when that comes late."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from ib_async import Fill as IBFill

from event_bus import CONNECTION_ERRORS, Event
from event_bus.tasks import cancel_and_wait
from execution.mapping import Commission, commission_of, fill_event, with_commission
from execution.model import Fill
from execution.state import FILL_COMPLETE, FILL_WITHOUT_COMMISSION, ExecutionState

log = structlog.get_logger()

Emit = Callable[[Event], None]


class FillDesk:
    """Turns ib_async executions into `Fill` events on `trading:fill:{SYMBOL}`, once each.

    An execution without its commissionReport waits up to `commission_wait` seconds for it;
    if the report comes later still, the fill is published a second time, same execution id,
    now with the commission (storage fills in the row; consumers key fills by execution id).
    Everything passes through one queue and one worker, so an execution and its report are
    handled in the order they arrived. Publication states persist in `ExecutionState`, so a
    restart's reconciliation publishes only what was not published yet.
    """

    def __init__(
        self,
        emit: Emit,
        state: ExecutionState,
        *,
        commission_wait: float,
        on_fill: Callable[[Fill], None],
    ) -> None:
        self._emit = emit
        self._state = state
        self._commission_wait = commission_wait
        self._on_fill = on_fill
        self._queue: asyncio.Queue[tuple[Fill, Commission | None] | str] = asyncio.Queue()
        self._states: dict[str, str] = {}  # execution id -> publication state (mirror of state)
        self._forced: set[str] = set()  # execution ids to publish again (`republish`)
        self._waiting: dict[str, Fill] = {}  # execution id -> fill held for its commission
        self._timers: dict[str, asyncio.TimerHandle] = {}  # execution id -> its deadline
        self._worker: asyncio.Task[None] | None = None

    @property
    def worker(self) -> asyncio.Task[None] | None:
        return self._worker

    def republish(self, execution_ids: set[str]) -> None:
        """Publish these executions again when next reported, whatever was published before
        (Redis lost its data, or storage lost journal entries); storage keeps one row per
        execution id."""
        self._states.clear()
        self._forced |= execution_ids

    def forget_all_but(self, execution_ids: set[str]) -> None:
        """Keep the publication state of these executions only (those the broker still reports):
        an execution reported again after all is looked up in `ExecutionState`."""
        self._states = {key: state for key, state in self._states.items() if key in execution_ids}

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="execution:fills")

    async def stop(self, timeout: float) -> None:
        """Handle what is queued, publish held fills without their commission, stop."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.error("fills_not_drained", queued=self._queue.qsize())
        for execution_id in list(self._waiting):
            await self._deadline(execution_id)
        if self._worker is not None:
            await cancel_and_wait(self._worker)
            self._worker = None

    def submit(self, fill: IBFill) -> None:
        """An execution or its commission report, live or from reconciliation (plain callback)."""
        commission = commission_of(fill)
        self._queue.put_nowait((fill_event(fill, commission), commission))

    async def wait_idle(self) -> None:
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, str):
                    await self._deadline(item)
                else:
                    await self._handle(*item)
            except Exception:
                log.exception("fill_handling_failed")
            finally:
                self._queue.task_done()

    async def _handle(self, fill: Fill, commission: Commission | None) -> None:
        execution_id = fill.execution_id
        state = await self._publication_state(execution_id)
        if state == FILL_COMPLETE:
            return
        if commission is None:
            if state is None and execution_id not in self._waiting:
                self._hold(fill)
            return
        self._release(execution_id)
        await self._publish(
            fill if state is None else with_commission(fill, commission), FILL_COMPLETE
        )

    def _hold(self, fill: Fill) -> None:
        execution_id = fill.execution_id
        self._waiting[execution_id] = fill
        loop = asyncio.get_running_loop()
        self._timers[execution_id] = loop.call_later(
            self._commission_wait, self._queue.put_nowait, execution_id
        )

    def _release(self, execution_id: str) -> None:
        self._waiting.pop(execution_id, None)
        timer = self._timers.pop(execution_id, None)
        if timer is not None:
            timer.cancel()

    async def _deadline(self, execution_id: str) -> None:
        fill = self._waiting.get(execution_id)
        if fill is None:
            return
        self._release(execution_id)
        log.warning("fill_published_without_commission", execution_id=execution_id)
        await self._publish(fill, FILL_WITHOUT_COMMISSION)

    async def _publication_state(self, execution_id: str) -> str | None:
        if execution_id in self._forced:
            return None
        if execution_id in self._states:
            return self._states[execution_id]
        try:
            state = await self._state.fill_state(execution_id)
        except CONNECTION_ERRORS as error:  # publish again rather than lose a fill
            log.warning("fill_state_unavailable", execution_id=execution_id, error=str(error))
            return None
        if state is not None:
            self._states[execution_id] = state
        return state

    async def _publish(self, fill: Fill, state: str) -> None:
        self._forced.discard(fill.execution_id)
        self._states[fill.execution_id] = state
        self._emit(fill)
        self._on_fill(fill)
        log.info(
            "fill_published",
            execution_id=fill.execution_id,
            signal_id=fill.signal_id,
            symbol=fill.symbol,
            side=fill.side,
            quantity=fill.quantity,
            price=fill.price,
            commission=fill.commission,
        )
        try:
            await self._state.set_fill_state(fill.execution_id, state)
        except CONNECTION_ERRORS as error:
            log.warning("fill_state_not_saved", execution_id=fill.execution_id, error=str(error))
