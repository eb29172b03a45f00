"""What must hold after a drill, each as a row of figures: name, passed, measured, bound."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from execution.model import Fill, OrderUpdate
from ibsim import Execution, OrderReceived

# The simulator's status words -> the daemon's order states (execution.mapping's table).
SIM_TO_DAEMON_STATUS = {
    "PreSubmitted": "submitted",
    "Submitted": "submitted",
    "Filled": "filled",
    "Cancelled": "cancelled",
}


@dataclass(frozen=True, slots=True)
class Check:
    """One invariant's outcome: what was measured against what is allowed, and any detail."""

    name: str
    passed: bool
    measured: str
    bound: str
    detail: str = ""


def fills_exactly_once(executions: Sequence[Execution], fills: Sequence[Fill]) -> Check:
    """Every simulator execution is one row in `fills`, with its side, size and price."""
    stored = {fill.execution_id: fill for fill in fills}
    missing = [e.exec_id for e in executions if e.exec_id not in stored]
    unknown = sorted(set(stored) - {e.exec_id for e in executions})
    different = [
        e.exec_id
        for e in executions
        if e.exec_id in stored and not _same_execution(e, stored[e.exec_id])
    ]
    problems = _listing(("missing", missing), ("not at the broker", unknown), ("differ", different))
    return Check(
        "every execution in fills exactly once",
        not problems,
        f"{len(executions)} executions, {len(fills)} rows",
        "equal sets",
        problems,
    )


def _same_execution(execution: Execution, fill: Fill) -> bool:
    side = "BUY" if execution.side in ("BOT", "BUY") else "SELL"
    return (side, float(execution.shares), round(float(execution.price), 6)) == (
        fill.side,
        float(fill.quantity),
        round(float(fill.price), 6),
    )


def one_order_per_signal(orders_received: Sequence[OrderReceived]) -> Check:
    """No signal id (orderRef) reached the simulator in more than one placeOrder."""
    counts = Counter(order.order_ref for order in orders_received if order.order_ref)
    doubled = sorted(ref for ref, count in counts.items() if count > 1)
    return Check(
        "no signal id placed twice",
        not doubled,
        f"{len(counts)} signal ids, max {max(counts.values(), default=0)} order(s) each",
        "<= 1 order per id",
        _listing(("doubled", doubled)),
    )


def in_doubt_only_if_unknown(order_refs_at_broker: Iterable[str], in_doubt: Sequence[str]) -> Check:
    """An order is reported in doubt (rule in_doubt) only if the broker never had it: the drills
    lose no order, so every such report of an order the broker has is a false alarm."""
    known = set(order_refs_at_broker)
    false_alarms = sorted({signal_id for signal_id in in_doubt if signal_id in known})
    return Check(
        "no order the broker has reported in doubt",
        not false_alarms,
        f"{len(in_doubt)} in-doubt reports, {len(false_alarms)} of orders the broker has",
        "0 of orders the broker has",
        _listing(("at the broker", false_alarms)),
    )


def order_states_match(
    sim_orders: Iterable[tuple[str, str, float]], stored: Sequence[OrderUpdate]
) -> Check:
    """Each simulator order (orderRef, status, filled) has the same final state in `orders`."""
    by_ref = {order.signal_id: order for order in stored if order.signal_id}
    mismatched: list[str] = []
    total = 0
    for ref, status, filled in sim_orders:
        total += 1
        row = by_ref.get(ref)
        expected = (SIM_TO_DAEMON_STATUS.get(status, status), float(filled))
        actual = (row.status, float(row.filled)) if row is not None else None
        if actual != expected:
            mismatched.append(f"{ref}: broker {expected}, stored {actual}")
    return Check(
        "final order states match the broker",
        not mismatched,
        f"{total} orders, {len(mismatched)} differ",
        "0 differ",
        _listing(("differ", mismatched)),
    )


def positions_match(
    broker: Mapping[str, float], label: str, ours: Mapping[str, float | Decimal]
) -> Check:
    """A view of the positions (`label`) equals the simulator's, flat symbols left out."""
    theirs = {symbol: float(q) for symbol, q in broker.items() if q}
    mine = {symbol: float(q) for symbol, q in ours.items() if q}
    differ = sorted(
        f"{s}: broker {theirs.get(s, 0):g}, {label} {mine.get(s, 0):g}"
        for s in set(theirs) | set(mine)
        if theirs.get(s, 0.0) != mine.get(s, 0.0)
    )
    return Check(
        f"positions ({label}) match the broker",
        not differ,
        f"{len(theirs)} symbols held",
        "equal",
        _listing(("differ", differ)),
    )


def market_data_resumed(recoveries: Mapping[str, float | None], bound_seconds: float) -> Check:
    """After every fault, every symbol ticked again within `bound_seconds`."""
    late = [name for name, seconds in recoveries.items() if seconds is None]
    worst = max((s for s in recoveries.values() if s is not None), default=0.0)
    slow = [f"{n} {s:.1f}s" for n, s in recoveries.items() if s is not None and s > bound_seconds]
    return Check(
        "market data resumed after every fault",
        not late and not slow,
        f"worst {worst:.1f} s over {len(recoveries)} faults",
        f"<= {bound_seconds:g} s",
        _listing(("never resumed", late), ("slow", slow)),
    )


def memory_bounded(peak_rss: Mapping[str, int], bound_mb: float) -> Check:
    """Each daemon process's peak resident memory stayed under `bound_mb`."""
    peaks = {name: rss / 2**20 for name, rss in peak_rss.items()}
    over = [f"{name} {mb:.0f} MB" for name, mb in peaks.items() if mb > bound_mb]
    measured = ", ".join(f"{name} {mb:.0f} MB" for name, mb in sorted(peaks.items()))
    return Check(
        "daemon memory bounded",
        bool(peaks) and not over,
        f"peak RSS {measured or 'not sampled'}",
        f"<= {bound_mb:g} MB each",
        _listing(("over", over)),
    )


def malformed_counted(sent: int, expected: int, counted: int) -> Check:
    """Every malformed delivery was rejected and counted by the daemon's bus (bus_rejected)."""
    return Check(
        "malformed messages all counted",
        counted == expected and sent > 0,
        f"{sent} sent, {expected} deliveries, {counted} counted",
        "counted == deliveries",
    )


def nothing_crashed(unexpected_exits: Mapping[str, list[int]], crash_lines: Sequence[str]) -> Check:
    """No daemon process died unasked, and no task logged a crash."""
    exits = [f"{name} exit {code}" for name, codes in unexpected_exits.items() for code in codes]
    return Check(
        "nothing crashed",
        not exits and not crash_lines,
        f"{len(exits)} unexpected exits, {len(crash_lines)} crash lines",
        "0",
        _listing(("exits", exits), ("crash lines", list(crash_lines))),
    )


def _listing(*groups: tuple[str, Sequence[str]]) -> str:
    parts = []
    for label, items in groups:
        if items:
            shown = ", ".join(items[:5]) + (f" ... (+{len(items) - 5})" if len(items) > 5 else "")
            parts.append(f"{label} {len(items)}: {shown}")
    return "; ".join(parts)


def format_table(checks: Sequence[Check], figures: Mapping[str, str] | None = None) -> str:
    """The checks as an aligned text table, then any extra figures."""
    rows = [("invariant", "result", "measured", "bound")]
    rows += [(c.name, "PASS" if c.passed else "FAIL", c.measured, c.bound) for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines += [f"  {c.name}: {c.detail}" for c in checks if c.detail]
    if figures:
        lines.append("")
        key_width = max(len(key) for key in figures)
        lines += [f"{key.ljust(key_width)}  {value}" for key, value in figures.items()]
    return "\n".join(lines)
