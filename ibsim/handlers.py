"""Answers to client requests, one function per request name; HANDLERS maps names to them."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import structlog

from ibsim import payloads
from ibsim.history import (
    HistoricalBar,
    bar_count,
    bar_seconds,
    duration_seconds,
    format_bar_date,
    generate_bars,
)
from ibsim.market import BarBuilder, Instrument
from ibsim.messages import encode_historical_data
from ibsim.orders import SimOrder
from ibsim.requests import Request
from ibsim.session import ClientSession, LiveHistory

if TYPE_CHECKING:
    from ibsim.server import Simulator

log = structlog.get_logger()

FARM_NOTICES = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
CLIENT_ID_IN_USE = (
    "Unable to connect as the client id is already in use. Retry with a unique client id."
)
NO_SECURITY = "No security definition has been found for the request"
MAX_TICKERS = "Max number of tickers has been reached"
PACING_VIOLATION = (
    "Historical Market Data Service error message:API historical data query cancelled: "
    "pacing violation"
)
DELAYED_TYPES = frozenset({3, 4})


def start_api(sim: Simulator, session: ClientSession, request: Request) -> None:
    client_id = request.integer("clientId")
    if not sim.claim_client_id(session, client_id):
        log.warning("client_id_in_use", client_id=client_id)
        session.send_error(-1, 326, CLIENT_ID_IN_USE)
        session.close()
        return
    session.send("managed_accounts", {"accounts": ",".join(sim.config.accounts)})
    session.send("next_valid_id", {"orderId": sim.broker.next_order_id})
    for code, message in FARM_NOTICES:
        session.send_error(-1, code, message)


def req_current_time(sim: Simulator, session: ClientSession, request: Request) -> None:
    session.send("current_time", {"time": int(time.time())})


def req_ids(sim: Simulator, session: ClientSession, request: Request) -> None:
    session.send("next_valid_id", {"orderId": sim.broker.next_order_id})


def req_managed_accounts(sim: Simulator, session: ClientSession, request: Request) -> None:
    session.send("managed_accounts", {"accounts": ",".join(sim.config.accounts)})


def req_market_data_type(sim: Simulator, session: ClientSession, request: Request) -> None:
    session.market_data_type = request.integer("marketDataType", 1)


def req_auto_open_orders(sim: Simulator, session: ClientSession, request: Request) -> None:
    """Accepted and ignored: the simulator has no manual TWS orders to bind."""


def req_contract_details(sim: Simulator, session: ClientSession, request: Request) -> None:
    req_id = request.integer("reqId")
    instrument = find_instrument(sim, session, request)
    if instrument is None:
        return
    exchange = request.text("exchange") or payloads.SMART
    session.send("contract_details", payloads.contract_details_fields(req_id, instrument, exchange))
    session.send("contract_details_end", {"reqId": req_id})


def req_mkt_data(sim: Simulator, session: ClientSession, request: Request) -> None:
    req_id = request.integer("reqId")
    instrument = find_instrument(sim, session, request)
    if instrument is None:
        return
    snapshot = request.flag("snapshot") or request.flag("regulatorySnapshot")
    if not snapshot and not sim.market_data_line_free():
        session.send_error(req_id, 101, MAX_TICKERS)
        return
    delayed = session.market_data_type in DELAYED_TYPES
    session.send("market_data_type", {"reqId": req_id, "marketDataType": 3 if delayed else 1})
    sim.catch_up(instrument)
    session.write(payloads.encode_quote(req_id, instrument, sim.epoch(), delayed))
    if snapshot:
        session.send("tick_snapshot_end", {"reqId": req_id})
    else:
        session.quotes[req_id] = instrument.symbol


def cancel_mkt_data(sim: Simulator, session: ClientSession, request: Request) -> None:
    session.quotes.pop(request.integer("reqId"), None)


def req_real_time_bars(sim: Simulator, session: ClientSession, request: Request) -> None:
    instrument = find_instrument(sim, session, request)
    if instrument is not None:
        session.realtime_bars[request.integer("reqId")] = instrument.symbol


def cancel_real_time_bars(sim: Simulator, session: ClientSession, request: Request) -> None:
    session.realtime_bars.pop(request.integer("reqId"), None)


def req_historical_data(sim: Simulator, session: ClientSession, request: Request) -> None:
    req_id = request.integer("reqId")
    if sim.faults.take_pacing_violation():
        session.send_error(req_id, 162, PACING_VIOLATION)
        return
    instrument = find_instrument(sim, session, request)
    if instrument is None:
        return
    try:
        seconds_per_bar = bar_seconds(request.text("barSize"))
        duration = duration_seconds(request.text("duration"))
    except (KeyError, ValueError):
        session.send_error(req_id, 321, "Error validating request: invalid bar size or duration")
        return
    sim.catch_up(instrument)
    format_date = request.integer("formatDate", 1)
    bars = history_bars(sim, instrument, seconds_per_bar, bar_count(duration, seconds_per_bar))
    send_history(session, req_id, bars, seconds_per_bar, format_date, duration)
    if request.flag("keepUpToDate"):
        last = bars[-1]
        bar = BarBuilder(last.start, last.open, last.high, last.low, last.close)
        session.live_histories[req_id] = LiveHistory(
            instrument.symbol, seconds_per_bar, format_date, bar
        )


def history_bars(
    sim: Simulator, instrument: Instrument, seconds_per_bar: int, count: int
) -> list[HistoricalBar]:
    """Seeded bars ending at the current price: the same seed gives the same history."""
    steps_per_bar = seconds_per_bar / sim.config.tick_interval
    return generate_bars(
        rng=random.Random(f"{sim.config.seed}:{instrument.symbol}:history:{seconds_per_bar}"),
        end_price=instrument.last,
        end_epoch=sim.epoch(),
        seconds_per_bar=seconds_per_bar,
        count=count,
        volatility_per_bar=sim.config.step_volatility * steps_per_bar**0.5,
    )


def send_history(
    session: ClientSession,
    req_id: int,
    bars: list[HistoricalBar],
    seconds_per_bar: int,
    format_date: int,
    duration: int,
) -> None:
    rows = [bar.row(format_bar_date(bar.start, seconds_per_bar, format_date)) for bar in bars]
    end = bars[-1].start + seconds_per_bar
    start, end_text = payloads.ib_timestamp(end - duration), payloads.ib_timestamp(end)
    session.write(encode_historical_data(req_id, start, end_text, rows))


def cancel_historical_data(sim: Simulator, session: ClientSession, request: Request) -> None:
    session.live_histories.pop(request.integer("reqId"), None)


def req_positions(sim: Simulator, session: ClientSession, request: Request) -> None:
    session.positions_subscribed = True
    for name, account in sim.broker.accounts.items():
        for symbol, position in account.positions.items():
            if position.quantity:
                instrument = sim.instruments[symbol]
                session.send("position", payloads.position_fields(name, instrument, position))
    session.send("position_end", {})


def cancel_positions(sim: Simulator, session: ClientSession, request: Request) -> None:
    session.positions_subscribed = False


def req_account_updates(sim: Simulator, session: ClientSession, request: Request) -> None:
    account = request.text("account") or sim.config.account
    if not request.flag("subscribe"):
        session.account_updates = None
        return
    if account not in sim.broker.accounts:
        session.send_error(-1, 321, f"Error validating request: unknown account {account}")
        return
    session.account_updates = account
    sim.send_account_updates(session, account)
    session.send("account_download_end", {"account": account})


def req_account_updates_multi(sim: Simulator, session: ClientSession, request: Request) -> None:
    req_id = request.integer("reqId")
    account = request.text("account") or sim.config.account
    if account not in sim.broker.accounts:
        session.send_error(req_id, 321, f"Error validating request: unknown account {account}")
        return
    session.account_multi[req_id] = account
    sim.send_account_multi(session, req_id, account)
    session.send("account_update_multi_end", {"reqId": req_id})


def cancel_account_updates_multi(sim: Simulator, session: ClientSession, request: Request) -> None:
    session.account_multi.pop(request.integer("reqId"), None)


def req_account_summary(sim: Simulator, session: ClientSession, request: Request) -> None:
    """The requested tags the simulator knows, for every account; not kept up to date."""
    req_id = request.integer("reqId")
    tags = set(request.text("tags").split(","))
    for name, account in sim.broker.accounts.items():
        for key, value, currency in payloads.account_value_rows(name, account, sim.instruments):
            if key in tags:
                values = {"reqId": req_id, "account": name, "tag": key, "value": value}
                session.send("account_summary", {**values, "currency": currency})
    session.send("account_summary_end", {"reqId": req_id})


def cancel_account_summary(sim: Simulator, session: ClientSession, request: Request) -> None:
    """Nothing to stop: account summaries are sent once."""


def req_open_orders(sim: Simulator, session: ClientSession, request: Request) -> None:
    orders = [o for o in sim.broker.active_orders() if o.client_id == session.client_id]
    send_open_orders(sim, session, orders)


def req_all_open_orders(sim: Simulator, session: ClientSession, request: Request) -> None:
    send_open_orders(sim, session, sim.broker.active_orders())


def send_open_orders(sim: Simulator, session: ClientSession, orders: list[SimOrder]) -> None:
    for order in orders:
        sim.send_order_state(session, order)
    session.send("open_order_end", {})


def req_completed_orders(sim: Simulator, session: ClientSession, request: Request) -> None:
    for order in sim.broker.todays_finished_orders():
        fields = payloads.order_fields(order, sim.instruments[order.symbol])
        session.send("completed_order", fields)
    session.send("completed_orders_end", {})


def req_executions(sim: Simulator, session: ClientSession, request: Request) -> None:
    req_id = request.integer("reqId")
    client_id = request.integer("clientId")
    account, symbol, side = request.text("account"), request.text("symbol"), request.text("side")
    for execution in sim.broker.todays_executions():
        if (
            (client_id and execution.client_id != client_id)
            or (account and execution.account != account)
            or (symbol and execution.symbol != symbol.upper())
            or (side and execution.side != side_code(side))
        ):
            continue
        sim.send_execution(session, req_id, execution)
    session.send("exec_details_end", {"reqId": req_id})


def side_code(side: str) -> str:
    """An execution filter's side (BUY/SELL or BOT/SLD) as execDetails writes it."""
    return {"BUY": "BOT", "SELL": "SLD"}.get(side.upper(), side.upper())


def place_order(sim: Simulator, session: ClientSession, request: Request) -> None:
    sim.place_order(session, request)


def cancel_order(sim: Simulator, session: ClientSession, request: Request) -> None:
    sim.cancel_order(session, request.integer("orderId"))


def find_instrument(sim: Simulator, session: ClientSession, request: Request) -> Instrument | None:
    """The instrument a request's contract names (by conId, else symbol), or error 200."""
    instrument = sim.lookup(
        request.integer("conId"), request.text("symbol"), request.text("secType")
    )
    if instrument is None:
        req_id = request.integer("reqId", -1) if "reqId" in request.fields else -1
        session.send_error(req_id, 200, NO_SECURITY)
    return instrument


HANDLERS: Mapping[str, Callable[[Simulator, ClientSession, Request], None]] = {
    "start_api": start_api,
    "req_current_time": req_current_time,
    "req_ids": req_ids,
    "req_managed_accounts": req_managed_accounts,
    "req_market_data_type": req_market_data_type,
    "req_auto_open_orders": req_auto_open_orders,
    "req_contract_details": req_contract_details,
    "req_mkt_data": req_mkt_data,
    "cancel_mkt_data": cancel_mkt_data,
    "req_real_time_bars": req_real_time_bars,
    "cancel_real_time_bars": cancel_real_time_bars,
    "req_historical_data": req_historical_data,
    "cancel_historical_data": cancel_historical_data,
    "req_positions": req_positions,
    "cancel_positions": cancel_positions,
    "req_account_updates": req_account_updates,
    "req_account_updates_multi": req_account_updates_multi,
    "cancel_account_updates_multi": cancel_account_updates_multi,
    "req_account_summary": req_account_summary,
    "cancel_account_summary": cancel_account_summary,
    "req_open_orders": req_open_orders,
    "req_all_open_orders": req_all_open_orders,
    "req_completed_orders": req_completed_orders,
    "req_executions": req_executions,
    "place_order": place_order,
    "cancel_order": cancel_order,
}
