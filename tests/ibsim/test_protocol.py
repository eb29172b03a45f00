"""ib_async as the oracle: its Client's bytes parse in the simulator, its Decoder reads ours."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC
from typing import Any

import pytest
from ib_async import (
    Client,
    CommissionReport,
    ExecutionFilter,
    LimitOrder,
    MarketOrder,
    Stock,
)
from ib_async.decoder import Decoder

from ibsim import SimConfig
from ibsim import payloads as p
from ibsim.market import build_universe
from ibsim.messages import LAYOUTS, encode, encode_historical_data, encode_server_version
from ibsim.orders import Execution, Position, SimOrder
from ibsim.requests import REQUEST_LAYOUTS, parse_request
from ibsim.wire import FrameReader

AAPL = Stock("AAPL", "SMART", "USD", conId=265598, primaryExchange="NASDAQ")
INSTRUMENT = build_universe(SimConfig())["AAPL"]
ORDER = SimOrder(
    order_id=7,
    client_id=1,
    perm_id=1000001,
    account="DU0000001",
    symbol="AAPL",
    action="BUY",
    total_quantity=10,
    order_type="LMT",
    limit_price=187.5,
    aux_price=None,
    tif="DAY",
    order_ref="ref-7",
)
FILLED_ORDER = SimOrder(**{**{f: getattr(ORDER, f) for f in ORDER.__slots__}, "status": "Filled"})
EXECUTION = Execution(
    exec_id="0000e0d5.000f4241.01.01",
    order_id=7,
    client_id=1,
    perm_id=1000001,
    account="DU0000001",
    symbol="AAPL",
    side="BOT",
    shares=10,
    price=187.5,
    cumulative_quantity=10,
    average_price=187.5,
    order_ref="ref-7",
    commission=1.0,
    realized_pnl=None,
    epoch=1_700_000_000,
    time_ns=0,
)
POSITION = Position(quantity=10, average_cost=187.6)


class RecordingWrapper:
    """Stands in for ib_async's Wrapper: records every call the Decoder makes."""

    defaultTimezone = UTC

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args: self.calls.append((name, args))


# --- client -> simulator: ib_async's own request methods produce the frames -----------------


def _captured_frames(call: Callable[[Client], None]) -> list[list[str]]:
    """Frames one ib_async Client request method sends at server version 178, re-read through
    the simulator's own frame reader."""
    client = Client(RecordingWrapper())
    client._serverVersion = 178
    client.connState = Client.CONNECTED
    client.clientId = 4
    sent: list[str] = []
    client.sendMsg = sent.append  # type: ignore[method-assign]
    call(client)
    reader = FrameReader()
    reader.handshake_done = True
    for message in sent:
        reader.feed(client._prefix(message.encode()))
    return reader.read_frames()


CLIENT_REQUESTS: list[tuple[str, Callable[[Client], None], dict[str, str]]] = [
    ("start_api", lambda c: c.startApi(), {"clientId": "4"}),
    ("req_mkt_data", lambda c: c.reqMktData(5, AAPL, "", False, False, []), {
        "reqId": "5", "conId": "265598", "symbol": "AAPL", "snapshot": "0"}),
    ("cancel_mkt_data", lambda c: c.cancelMktData(5), {"reqId": "5"}),
    ("place_order", lambda c: c.placeOrder(11, AAPL, LimitOrder("BUY", 100, 187.5, orderRef="r")), {
        "orderId": "11", "symbol": "AAPL", "action": "BUY", "totalQuantity": "100",
        "orderType": "LMT", "lmtPrice": "187.5", "auxPrice": "", "orderRef": "r"}),
    ("cancel_order", lambda c: c.cancelOrder(11), {"orderId": "11"}),
    ("req_open_orders", lambda c: c.reqOpenOrders(), {}),
    ("req_all_open_orders", lambda c: c.reqAllOpenOrders(), {}),
    ("req_auto_open_orders", lambda c: c.reqAutoOpenOrders(True), {"autoBind": "1"}),
    ("req_account_updates", lambda c: c.reqAccountUpdates(True, "DU0000001"), {
        "subscribe": "1", "account": "DU0000001"}),
    ("req_executions", lambda c: c.reqExecutions(7, ExecutionFilter(clientId=3, symbol="AAPL")), {
        "reqId": "7", "clientId": "3", "symbol": "AAPL"}),
    ("req_ids", lambda c: c.reqIds(1), {"count": "1"}),
    ("req_contract_details", lambda c: c.reqContractDetails(6, Stock("MSFT", "SMART", "USD")), {
        "reqId": "6", "symbol": "MSFT", "secType": "STK", "exchange": "SMART"}),
    ("req_managed_accounts", lambda c: c.reqManagedAccts(), {}),
    ("req_historical_data", lambda c: c.reqHistoricalData(
        3, AAPL, "", "1 D", "1 min", "TRADES", 1, 1, True, []), {
        "reqId": "3", "barSize": "1 min", "duration": "1 D", "formatDate": "1",
        "keepUpToDate": "1"}),
    ("cancel_historical_data", lambda c: c.cancelHistoricalData(3), {"reqId": "3"}),
    ("req_current_time", lambda c: c.reqCurrentTime(), {}),
    ("req_real_time_bars", lambda c: c.reqRealTimeBars(4, AAPL, 5, "TRADES", False, []), {
        "reqId": "4", "barSize": "5", "symbol": "AAPL"}),
    ("cancel_real_time_bars", lambda c: c.cancelRealTimeBars(4), {"reqId": "4"}),
    ("req_market_data_type", lambda c: c.reqMarketDataType(3), {"marketDataType": "3"}),
    ("req_positions", lambda c: c.reqPositions(), {}),
    ("cancel_positions", lambda c: c.cancelPositions(), {}),
    ("req_account_updates_multi", lambda c: c.reqAccountUpdatesMulti(8, "DU0000001", "", False), {
        "reqId": "8", "account": "DU0000001"}),
    ("cancel_account_updates_multi", lambda c: c.cancelAccountUpdatesMulti(8), {"reqId": "8"}),
    ("req_completed_orders", lambda c: c.reqCompletedOrders(False), {"apiOnly": "0"}),
    ("req_account_summary", lambda c: c.reqAccountSummary(9, "All", "NetLiquidation"), {
        "reqId": "9", "group": "All", "tags": "NetLiquidation"}),
    ("cancel_account_summary", lambda c: c.cancelAccountSummary(9), {"reqId": "9"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "call", "expected"), CLIENT_REQUESTS, ids=[r[0] for r in CLIENT_REQUESTS]
)
def test_simulator_parses_ib_async_requests(
    name: str, call: Callable[[Client], None], expected: dict[str, str]
) -> None:
    """Each request ib_async sends is read with the right name and field values."""
    [fields] = _captured_frames(call)
    request = parse_request(fields)
    assert request.name == name
    assert {key: request.fields[key] for key in expected} == expected


def test_every_request_layout_is_checked_against_ib_async() -> None:
    """No request layout escapes the oracle above."""
    assert {name for name, _, _ in CLIENT_REQUESTS} == {n for n, _ in REQUEST_LAYOUTS.values()}


def test_market_order_has_no_limit_price() -> None:
    """An unset lmtPrice arrives empty, which the simulator reads as 'no price'."""
    [fields] = _captured_frames(lambda c: c.placeOrder(12, AAPL, MarketOrder("SELL", 3)))
    request = parse_request(fields)
    assert (request.text("orderType"), request.text("lmtPrice")) == ("MKT", "")


# --- simulator -> client: ib_async's Decoder reads every message the simulator sends ----------


def _decode(frames: bytes) -> list[tuple[str, tuple[Any, ...]]]:
    wrapper = RecordingWrapper()
    decoder = Decoder(wrapper, 178)  # type: ignore[arg-type]
    while frames:
        (length,) = struct.unpack(">I", frames[:4])
        decoder.interpret(frames[4 : 4 + length].decode().split("\0")[:-1])
        frames = frames[4 + length :]
    return wrapper.calls


def _only(calls: list[tuple[str, tuple[Any, ...]]], method: str) -> tuple[Any, ...]:
    assert [name for name, _ in calls] == [method]
    return calls[0][1]


OUTGOING: list[tuple[str, dict[str, object], str, Callable[[tuple[Any, ...]], object]]] = [
    ("tick_price", {"reqId": 5, "tickType": 1, "price": 187.5, "size": 300}, "priceSizeTick",
     lambda a: a == (5, 1, 187.5, 300.0)),
    ("tick_size", {"reqId": 5, "tickType": 8, "size": 1200}, "tickSize",
     lambda a: a == (5, 8, 1200.0)),
    ("tick_string", {"reqId": 5, "tickType": 45, "value": 1_700_000_000}, "tickString",
     lambda a: a == (5, 45, "1700000000")),
    ("order_status", p.order_status_fields(ORDER), "orderStatus",
     lambda a: a == (7, "Submitted", 0.0, 10.0, 0.0, 1000001, 0, 0.0, 1, "", 0.0)),
    ("error", {"reqId": -1, "code": 2104, "message": "OK", "advancedOrderRejectJson": ""},
     "error", lambda a: a == (-1, 2104, "OK", "")),
    ("open_order", p.order_fields(ORDER, INSTRUMENT), "openOrder",
     lambda a: (a[0], a[1].conId, a[2].orderRef, a[2].permId, a[2].lmtPrice, a[2].clientId,
                a[3].status) == (7, 265598, "ref-7", 1000001, 187.5, 1, "Submitted")),
    ("account_value", {"key": "NetLiquidation", "value": "1000000.00", "currency": "USD",
                       "account": "DU0000001"}, "updateAccountValue",
     lambda a: a == ("NetLiquidation", "1000000.00", "USD", "DU0000001")),
    ("portfolio_value", p.portfolio_fields("DU0000001", INSTRUMENT, POSITION), "updatePortfolio",
     lambda a: (a[0].conId, a[0].primaryExchange, a[1], a[4], a[7])
     == (265598, "NASDAQ", 10.0, 187.6, "DU0000001")),
    ("account_time", {"time": "14:30"}, "updateAccountTime", lambda a: a == ("14:30",)),
    ("next_valid_id", {"orderId": 12}, "nextValidId", lambda a: a == (12,)),
    ("contract_details", p.contract_details_fields(6, INSTRUMENT, "SMART"), "contractDetails",
     lambda a: (a[0], a[1].contract.conId, a[1].contract.primaryExchange, a[1].longName,
                a[1].minTick) == (6, 265598, "NASDAQ", "APPLE INC", 0.01)),
    ("exec_details", p.execution_fields(-1, EXECUTION, INSTRUMENT), "execDetails",
     lambda a: (a[0], a[1].conId, a[2].execId, a[2].orderRef, a[2].shares, a[2].permId,
                a[2].time.timestamp()) == (-1, 265598, EXECUTION.exec_id, "ref-7", 10.0,
                                           1000001, 1_700_000_000)),
    ("managed_accounts", {"accounts": "DU0000001"}, "managedAccounts",
     lambda a: a == ("DU0000001",)),
    ("historical_data_update", {"reqId": 3, "barCount": 4, "date": "1700000000", "open": 1.0,
                                "close": 2.0, "high": 3.0, "low": 0.5, "wap": 1.5,
                                "volume": 100}, "historicalDataUpdate",
     lambda a: (a[0], a[1].open, a[1].close, a[1].high, a[1].low, a[1].volume)
     == (3, 1.0, 2.0, 3.0, 0.5, 100.0)),
    ("current_time", {"time": 1_700_000_000}, "currentTime", lambda a: a == (1_700_000_000,)),
    ("realtime_bar", {"reqId": 4, "time": 1_700_000_000, "open": 1.0, "high": 3.0, "low": 0.5,
                      "close": 2.0, "volume": 100, "wap": 1.5, "count": 9}, "realtimeBar",
     lambda a: a == (4, 1_700_000_000, 1.0, 3.0, 0.5, 2.0, 100.0, 1.5, 9)),
    ("contract_details_end", {"reqId": 6}, "contractDetailsEnd", lambda a: a == (6,)),
    ("open_order_end", {}, "openOrderEnd", lambda a: a == ()),
    ("account_download_end", {"account": "DU0000001"}, "accountDownloadEnd",
     lambda a: a == ("DU0000001",)),
    ("exec_details_end", {"reqId": 7}, "execDetailsEnd", lambda a: a == (7,)),
    ("tick_snapshot_end", {"reqId": 5}, "tickSnapshotEnd", lambda a: a == (5,)),
    ("market_data_type", {"reqId": 5, "marketDataType": 3}, "marketDataType",
     lambda a: a == (5, 3)),
    ("commission_report", p.commission_fields(EXECUTION), "commissionReport",
     lambda a: a == (CommissionReport(EXECUTION.exec_id, 1.0, "USD", 1.7976931348623157e308,
                                      1.7976931348623157e308, 0),)),
    ("position", p.position_fields("DU0000001", INSTRUMENT, POSITION), "position",
     lambda a: (a[0], a[1].conId, a[2], a[3]) == ("DU0000001", 265598, 10.0, 187.6)),
    ("position_end", {}, "positionEnd", lambda a: a == ()),
    ("account_update_multi", {"reqId": 8, "account": "DU0000001", "modelCode": "",
                              "key": "NetLiquidation", "value": "1.00", "currency": "USD"},
     "accountUpdateMulti", lambda a: a == (8, "DU0000001", "", "NetLiquidation", "1.00", "USD")),
    ("account_update_multi_end", {"reqId": 8}, "accountUpdateMultiEnd", lambda a: a == (8,)),
    ("completed_order", p.order_fields(FILLED_ORDER, INSTRUMENT), "completedOrder",
     lambda a: (a[0].conId, a[1].orderRef, a[1].permId, a[1].totalQuantity, a[2].status)
     == (265598, "ref-7", 1000001, 10.0, "Filled")),
    ("completed_orders_end", {}, "completedOrdersEnd", lambda a: a == ()),
    ("account_summary", {"reqId": 9, "account": "DU0000001", "tag": "NetLiquidation",
                         "value": "1.00", "currency": "USD"}, "accountSummary",
     lambda a: a == (9, "DU0000001", "NetLiquidation", "1.00", "USD")),
    ("account_summary_end", {"reqId": 9}, "accountSummaryEnd", lambda a: a == (9,)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("message", "values", "method", "check"), OUTGOING, ids=lambda v: str(v)[:24]
)
def test_ib_async_decodes_what_the_simulator_sends(
    message: str,
    values: dict[str, object],
    method: str,
    check: Callable[[tuple[Any, ...]], object],
    decoder_errors: object,
) -> None:
    """Each message decodes into the wrapper call and values ib_async expects."""
    args = _only(_decode(encode(message, values)), method)
    assert check(args), args


def test_every_outgoing_layout_is_checked_against_the_decoder() -> None:
    """No outgoing layout escapes the oracle above."""
    assert {message for message, _, _, _ in OUTGOING} == set(LAYOUTS)


def test_open_order_has_the_127_fields_of_version_178() -> None:
    """openOrder for a plain order is 127 fields long (IB_PROTOCOL.md)."""
    frame = encode("open_order", p.order_fields(ORDER, INSTRUMENT))
    assert len(frame[4:].split(b"\0")) - 1 == 127


def test_historical_data_decodes_bar_by_bar(decoder_errors: object) -> None:
    """historicalData gives one historicalData call per bar, then historicalDataEnd."""
    bar = {"date": "20240105 14:30:00 UTC", "open": 1.0, "high": 3.0, "low": 0.5, "close": 2.0,
           "volume": 100, "wap": 1.5, "count": 9}  # fmt: skip
    calls = _decode(encode_historical_data(3, "start", "end", [bar, bar]))
    assert [name for name, _ in calls] == ["historicalData", "historicalData", "historicalDataEnd"]
    first = calls[0][1][1]
    assert (first.open, first.high, first.low, first.close, first.barCount) == (1, 3, 0.5, 2, 9)
    assert calls[2][1] == (3, "start", "end")


def test_quote_update_decodes_into_ticks(decoder_errors: object) -> None:
    """A quote update is bid, ask and last (with sizes), volume and the last-trade time."""
    calls = _decode(p.encode_quote(5, INSTRUMENT, 1_700_000_000, delayed=False))
    assert [(name, args[1]) for name, args in calls] == [
        ("priceSizeTick", 1),
        ("priceSizeTick", 2),
        ("priceSizeTick", 4),
        ("tickSize", 8),
        ("tickString", 45),
    ]


def test_server_version_frame_has_exactly_two_fields() -> None:
    """The handshake answer is `178` and a connection time: ib_async requires two fields."""
    frame = encode_server_version("20240105 14:30:00 UTC")
    assert frame[4:].split(b"\0")[:-1] == [b"178", b"20240105 14:30:00 UTC"]
