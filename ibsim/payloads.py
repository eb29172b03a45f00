"""Field values of outgoing messages, built from the simulator's instruments, orders and fills."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ibsim.market import Instrument
from ibsim.messages import encode
from ibsim.orders import EXECUTION_EXCHANGE, Account, Execution, Position, SimOrder
from ibsim.wire import UNSET_DOUBLE

SMART = "SMART"
ORDER_TYPES = "LMT,MKT,STP,STP LMT"
VALID_EXCHANGES = "SMART,ISLAND,NYSE,ARCA,BATS,IEX"
TRADING_HOURS = "20240101:0930-20240101:1600"


def contract_fields(instrument: Instrument, exchange: str = SMART) -> dict[str, object]:
    """The contract block (C11) shared by many messages."""
    return {
        "conId": instrument.con_id,
        "symbol": instrument.symbol,
        "secType": "STK",
        "lastTradeDate": "",
        "strike": 0.0,
        "right": "",
        "multiplier": "",
        "exchange": exchange,
        "primaryExchange": instrument.listing.primary_exchange,
        "currency": "USD",
        "localSymbol": instrument.symbol,
        "tradingClass": "NMS",
    }


def contract_details_fields(
    req_id: int, instrument: Instrument, exchange: str
) -> dict[str, object]:
    return {
        **contract_fields(instrument, exchange),
        "reqId": req_id,
        "lastTimes": "",
        "marketName": "NMS",
        "minTick": 0.01,
        "orderTypes": ORDER_TYPES,
        "validExchanges": VALID_EXCHANGES,
        "priceMagnifier": 1,
        "underConId": 0,
        "longName": instrument.listing.long_name,
        "timeZoneId": "US/Eastern",
        "tradingHours": TRADING_HOURS,
        "liquidHours": TRADING_HOURS,
        "aggGroup": 1,
        "marketRuleIds": "26",
        "stockType": "COMMON",
        "minSize": 1,
        "sizeIncrement": 1,
        "suggestedSizeIncrement": 100,
    }


def order_fields(order: SimOrder, instrument: Instrument) -> dict[str, object]:
    """Fields shared by openOrder and completedOrder."""
    return {
        **contract_fields(instrument),
        "orderId": order.order_id,
        "clientId": order.client_id,
        "permId": order.perm_id,
        "action": order.action,
        "totalQuantity": order.total_quantity,
        "orderType": order.order_type,
        "lmtPrice": order.limit_price,
        "auxPrice": order.aux_price,
        "tif": order.tif,
        "account": order.account,
        "openClose": "",
        "origin": 0,
        "orderRef": order.order_ref,
        "status": order.status,
        "filledQuantity": order.filled,
        "completedTime": order.completed_time,
        "completedStatus": order.status,
        "commissionCurrency": "USD",
    }


def order_status_fields(order: SimOrder) -> dict[str, object]:
    return {
        "orderId": order.order_id,
        "status": order.status,
        "filled": order.filled,
        "remaining": order.remaining,
        "avgFillPrice": order.average_fill_price,
        "permId": order.perm_id,
        "lastFillPrice": order.last_fill_price,
        "clientId": order.client_id,
    }


def execution_fields(
    req_id: int, execution: Execution, instrument: Instrument
) -> dict[str, object]:
    return {
        **contract_fields(instrument, exchange=EXECUTION_EXCHANGE),
        "reqId": req_id,
        "orderId": execution.order_id,
        "execId": execution.exec_id,
        "time": ib_timestamp(execution.epoch),
        "account": execution.account,
        "side": execution.side,
        "shares": execution.shares,
        "price": execution.price,
        "permId": execution.perm_id,
        "clientId": execution.client_id,
        "cumQty": execution.cumulative_quantity,
        "avgPrice": execution.average_price,
        "orderRef": execution.order_ref,
    }


def commission_fields(execution: Execution) -> dict[str, object]:
    realized = UNSET_DOUBLE if execution.realized_pnl is None else round(execution.realized_pnl, 4)
    return {
        "execId": execution.exec_id,
        "commission": execution.commission,
        "currency": "USD",
        "realizedPNL": realized,
        "yield": UNSET_DOUBLE,
        "yieldRedemptionDate": "",
    }


def ib_timestamp(epoch: float) -> str:
    """`20240105 14:30:00 UTC`: the datetime format TWS uses, with an explicit zone."""
    return time.strftime("%Y%m%d %H:%M:%S", time.gmtime(epoch)) + " UTC"


# tick field -> (live tick type, delayed tick type)
TICK_TYPES = {
    "bid": (1, 66),
    "ask": (2, 67),
    "last": (4, 68),
    "volume": (8, 74),
    "last_timestamp": (45, 88),
}


def encode_quote(req_id: int, instrument: Instrument, epoch: float, delayed: bool) -> bytes:
    """The ticks of one quote update: bid, ask and last with their sizes, volume, time."""
    column = 1 if delayed else 0
    ticks: tuple[tuple[str, str, dict[str, object]], ...] = (
        ("tick_price", "bid", {"price": instrument.bid, "size": instrument.bid_size}),
        ("tick_price", "ask", {"price": instrument.ask, "size": instrument.ask_size}),
        ("tick_price", "last", {"price": instrument.last, "size": instrument.last_size}),
        ("tick_size", "volume", {"size": instrument.volume}),
        ("tick_string", "last_timestamp", {"value": int(epoch)}),
    )
    return b"".join(
        encode(message, {"reqId": req_id, "tickType": TICK_TYPES[name][column], **values})
        for message, name, values in ticks
    )


def account_value_rows(
    name: str, account: Account, instruments: Mapping[str, Instrument]
) -> list[tuple[str, str, str]]:
    """(key, value, currency) rows of reqAccountUpdates for one account, marked to market."""
    gross = sum(
        abs(position.quantity) * instruments[symbol].last
        for symbol, position in account.positions.items()
    )
    market_value = sum(
        position.quantity * instruments[symbol].last
        for symbol, position in account.positions.items()
    )
    liquidation = account.cash + market_value
    realized = sum(position.realized_pnl for position in account.positions.values())
    unrealized = sum(
        (instruments[symbol].last - position.average_cost) * position.quantity
        for symbol, position in account.positions.items()
    )
    money = {
        "NetLiquidation": liquidation,
        "TotalCashValue": account.cash,
        "CashBalance": account.cash,
        "EquityWithLoanValue": liquidation,
        "GrossPositionValue": gross,
        "AvailableFunds": liquidation,
        "ExcessLiquidity": liquidation,
        "BuyingPower": 4 * liquidation,
        "RealizedPnL": realized,
        "UnrealizedPnL": unrealized,
    }
    rows = [
        ("AccountCode", name, ""),
        ("AccountType", "INDIVIDUAL", ""),
        ("Currency", "USD", "USD"),
    ]
    rows += [(key, f"{value:.2f}", "USD") for key, value in money.items()]
    return rows


def position_fields(name: str, instrument: Instrument, position: Position) -> dict[str, object]:
    return {
        **contract_fields(instrument, exchange=instrument.listing.primary_exchange),
        "account": name,
        "position": position.quantity,
        "avgCost": round(position.average_cost, 6),
    }


def portfolio_fields(name: str, instrument: Instrument, position: Position) -> dict[str, object]:
    price = instrument.last
    return {
        **contract_fields(instrument),
        "account": name,
        "position": position.quantity,
        "marketPrice": price,
        "marketValue": round(position.quantity * price, 2),
        "averageCost": round(position.average_cost, 6),
        "unrealizedPNL": round((price - position.average_cost) * position.quantity, 2),
        "realizedPNL": round(position.realized_pnl, 2),
    }
