"""A first ib_async script, as a new user writes it from the ib_async docs.

Run the simulator, then this script:

    python -m ibsim --port 4102 --account DU0000001
    python examples/ib_async_hello.py --port 4102
"""

from __future__ import annotations

import argparse

from ib_async import IB, MarketOrder, Stock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4102)
    args = parser.parse_args()

    ib = IB()
    ib.connect(args.host, args.port, clientId=1)
    print("accounts:", ib.managedAccounts())

    contract = Stock("AAPL", "SMART", "USD")
    ib.qualifyContracts(contract)
    print("qualified:", contract)

    ticker = ib.reqMktData(contract)
    for _ in range(5):
        ib.sleep(0.5)
        print(f"tick: bid={ticker.bid} ask={ticker.ask} last={ticker.last}")

    trade = ib.placeOrder(contract, MarketOrder("BUY", 10))
    while not trade.isDone():
        ib.waitOnUpdate(timeout=5)
    ib.sleep(0.2)
    print("status:", trade.orderStatus.status)
    for fill in trade.fills:
        print(
            f"fill: {fill.execution.side} {fill.execution.shares} @ {fill.execution.price}"
            f" commission {fill.commissionReport.commission} {fill.commissionReport.currency}"
        )
    for position in ib.positions():
        print(f"position: {position.contract.symbol} {position.position} @ {position.avgCost}")

    ib.disconnect()


if __name__ == "__main__":
    main()
