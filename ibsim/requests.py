"""Field layouts of the client requests the simulator understands, and their parser."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

CONTRACT_FIELDS = (
    "conId symbol secType lastTradeDate strike right multiplier exchange primaryExchange "
    "currency localSymbol tradingClass"
)

# message id -> (request name, field names after the id); trailing extra fields are ignored
REQUEST_LAYOUTS: Mapping[int, tuple[str, str]] = {
    1: (
        "req_mkt_data",
        f"version reqId {CONTRACT_FIELDS} deltaNeutralPresent genericTicks snapshot "
        "regulatorySnapshot options",
    ),
    2: ("cancel_mkt_data", "version reqId"),
    3: (
        "place_order",
        f"orderId {CONTRACT_FIELDS} secIdType secId action totalQuantity orderType lmtPrice "
        "auxPrice tif ocaGroup account openClose origin orderRef transmit parentId",
    ),
    4: ("cancel_order", "version orderId"),
    5: ("req_open_orders", "version"),
    6: ("req_account_updates", "version subscribe account"),
    7: (
        "req_executions",
        "version reqId clientId account time symbol secType exchange side",
    ),
    8: ("req_ids", "version count"),
    9: ("req_contract_details", f"version reqId {CONTRACT_FIELDS} includeExpired"),
    15: ("req_auto_open_orders", "version autoBind"),
    16: ("req_all_open_orders", "version"),
    17: ("req_managed_accounts", "version"),
    20: (
        "req_historical_data",
        f"reqId {CONTRACT_FIELDS} includeExpired endDateTime barSize duration useRTH "
        "whatToShow formatDate keepUpToDate chartOptions",
    ),
    25: ("cancel_historical_data", "version reqId"),
    49: ("req_current_time", "version"),
    50: ("req_real_time_bars", f"version reqId {CONTRACT_FIELDS} barSize whatToShow useRTH"),
    51: ("cancel_real_time_bars", "version reqId"),
    59: ("req_market_data_type", "version marketDataType"),
    61: ("req_positions", "version"),
    62: ("req_account_summary", "version reqId group tags"),
    63: ("cancel_account_summary", "version reqId"),
    64: ("cancel_positions", "version"),
    71: ("start_api", "version clientId"),
    76: ("req_account_updates_multi", "version reqId account modelCode"),
    77: ("cancel_account_updates_multi", "version reqId"),
    99: ("req_completed_orders", "apiOnly"),
}
_NAMES = {message_id: names.split() for message_id, (_, names) in REQUEST_LAYOUTS.items()}
_DELTA_NEUTRAL_FLAG = _NAMES[1].index("deltaNeutralPresent")


class UnknownRequest(Exception):
    """The message id is not one the simulator understands."""


class MalformedRequest(Exception):
    """The fields of a known request cannot be read."""


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed client request: its name and its fields by name (all still text)."""

    name: str
    fields: Mapping[str, str]

    def text(self, name: str) -> str:
        return self.fields[name]

    def integer(self, name: str, default: int = 0) -> int:
        text = self.fields[name]
        return default if text == "" else int(_checked(text, name, int))

    def number(self, name: str, default: float = 0.0) -> float:
        text = self.fields[name]
        return default if text == "" else _checked(text, name, float)

    def flag(self, name: str) -> bool:
        return self.integer(name) != 0


def parse_request(fields: list[str]) -> Request:
    """Map a frame's fields onto the layout of its message id."""
    try:
        message_id = int(fields[0])
    except (IndexError, ValueError) as error:
        raise UnknownRequest(fields[:1]) from error
    if message_id not in REQUEST_LAYOUTS:
        raise UnknownRequest(message_id)
    values = fields[1:]
    if message_id == 1 and values[_DELTA_NEUTRAL_FLAG : _DELTA_NEUTRAL_FLAG + 1] == ["1"]:
        # a delta-neutral contract adds conId, delta, price after the flag
        del values[_DELTA_NEUTRAL_FLAG + 1 : _DELTA_NEUTRAL_FLAG + 4]
    names = _NAMES[message_id]
    if len(values) < len(names):
        raise MalformedRequest(f"{REQUEST_LAYOUTS[message_id][0]} has {len(values)} fields")
    return Request(REQUEST_LAYOUTS[message_id][0], dict(zip(names, values, strict=False)))


def _checked(text: str, name: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError as error:
        raise MalformedRequest(f"{name}={text!r}") from error
