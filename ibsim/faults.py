"""Fault switches the simulator consults, and the TWS messages that announce faults."""

from __future__ import annotations

from dataclasses import dataclass

CONNECTIVITY_MESSAGES = {
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and TWS has been restored- data lost.",
    1102: "Connectivity between IB and TWS has been restored- data maintained.",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    10182: "Failed to request live updates (disconnected).",
}
RESTORED_CODES = frozenset({1101, 1102})


@dataclass(slots=True)
class FaultState:
    """Pending one-shot faults and ongoing outages."""

    pacing_violations_left: int = 0
    drop_socket_on_next_order: bool = False
    lose_next_order: bool = False
    market_data_outages: int = 0  # farm blips and connectivity losses in progress

    @property
    def market_data_paused(self) -> bool:
        return self.market_data_outages > 0

    def take_pacing_violation(self) -> bool:
        """True (and one fewer left) if this historical request must fail with 162."""
        if self.pacing_violations_left <= 0:
            return False
        self.pacing_violations_left -= 1
        return True

    def take_drop_on_order(self) -> bool:
        """True once after drop_socket_on_next_order was armed."""
        armed = self.drop_socket_on_next_order
        self.drop_socket_on_next_order = False
        return armed

    def take_lost_order(self) -> bool:
        """True once after lose_next_order was armed."""
        armed = self.lose_next_order
        self.lose_next_order = False
        return armed


def message_for(code: int) -> str:
    """The text TWS sends with `code`, or a generic one."""
    return CONNECTIVITY_MESSAGES.get(code, f"Simulated error {code}")
