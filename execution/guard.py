"""The paper/live guard: which managed accounts this daemon may trade, decided before any order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

PAPER_PREFIX = "DU"  # IB's paper accounts start with DU by wide convention (no API flag exists)

# port -> the mode its default owner implies (TWS live/paper, Gateway live/paper)
DEFAULT_PORT_MODES: dict[int, Literal["paper", "live"]] = {
    7496: "live",
    4001: "live",
    7497: "paper",
    4002: "paper",
}


class GuardRefused(RuntimeError):
    """The managed accounts contradict TRADING_MODE / LIVE_ACCOUNT: the daemon must not trade.

    `main.py` maps it to exit code 3.
    """


def trading_account(
    mode: Literal["paper", "live"], live_account: str, accounts: Sequence[str]
) -> str:
    """The account to trade, or `GuardRefused` saying why none may be traded."""
    if not accounts:
        raise GuardRefused("IB reported no managed account; refusing to trade")
    if mode == "paper":
        return _paper_account(accounts)
    return _live_account(live_account, accounts)


def _paper_account(accounts: Sequence[str]) -> str:
    live = [account for account in accounts if not account.startswith(PAPER_PREFIX)]
    if live:
        raise GuardRefused(
            f"TRADING_MODE=paper but IB manages non-paper account(s) {', '.join(live)} "
            f"(paper accounts start with {PAPER_PREFIX}); refusing to trade. "
            "To trade live set TRADING_MODE=live and LIVE_ACCOUNT."
        )
    return accounts[0]


def check_live_account(mode: Literal["paper", "live"], live_account: str) -> None:
    """What the settings alone tell: live trading names one live account. `GuardRefused` if
    not, so that `main.py` refuses before connecting anything."""
    if mode != "live":
        return
    if not live_account:
        raise GuardRefused("TRADING_MODE=live needs LIVE_ACCOUNT naming the live account")
    if live_account.startswith(PAPER_PREFIX):
        raise GuardRefused(f"TRADING_MODE=live but LIVE_ACCOUNT={live_account} is a paper account")


def _live_account(live_account: str, accounts: Sequence[str]) -> str:
    check_live_account("live", live_account)
    if live_account not in accounts:
        raise GuardRefused(
            f"TRADING_MODE=live with LIVE_ACCOUNT={live_account}, but IB manages "
            f"{', '.join(accounts)}; refusing to trade"
        )
    paper = [account for account in accounts if account.startswith(PAPER_PREFIX)]
    if paper:
        raise GuardRefused(
            f"TRADING_MODE=live but IB manages paper account(s) {', '.join(paper)}; "
            "refusing to trade"
        )
    return live_account


def port_warning(mode: Literal["paper", "live"], port: int) -> str | None:
    """A warning when the port is another mode's default (a port proves nothing alone)."""
    implied = DEFAULT_PORT_MODES.get(port)
    if implied is None or implied == mode:
        return None
    return f"TRADING_MODE={mode} but IB_PORT={port} is the default {implied} port"
