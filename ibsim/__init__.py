"""IB Gateway simulator: speaks the TWS API socket protocol (server version 178) so the real
ib_async client runs without an IB account.

    from ibsim import Simulator, SimConfig
    async with Simulator(SimConfig(port=0, seed=1, speed=10)) as sim:
        ...  # connect ib_async.IB to 127.0.0.1:sim.port

Where it differs from real TWS / IB Gateway:
- Stocks only (secType STK, USD, SMART routing); every symbol trades around the clock, and
  useRTH, whatToShow, genericTicks, market-data options and TIF are accepted but ignored.
- Prices are a seeded random walk per symbol (one step per `tick_interval` of simulated
  time); bid/ask sit one spread around the last trade. Every tick carries bid, ask and last
  with their sizes, the volume and the last-trade time, changed or not.
- reqMarketDataType 3/4 is honoured with delayed tick types (66/67/68...) with no delay.
- Historical bars are generated on request (seeded, ending at the current price); dates are
  in UTC; endDateTime is ignored (bars always end now); keepUpToDate updates arrive once per
  5 simulated seconds. reqRealTimeBars always gives 5-second bars.
- Simulated time (bar and execution times) runs `speed` times faster than the wall clock;
  reqCurrentTime answers the wall clock. Fault durations are wall-clock seconds.
- Orders: MKT, LMT, STP and STP LMT. Fills happen at the touch (ask for buys, bid for sells)
  with at most `max_fill_size` shares per execution, one execution per tick. Parent/child,
  OCA, transmit=False, what-if and algos are not simulated. Order messages go only to the
  client that placed the order (no clientId-0 or master-client fan-out). Rejections use
  error 201 with the reason in the text. Commissions follow IBKR fixed pricing.
- reqExecutions with clientId 0 in its filter returns every client's executions; the time
  and exchange filters are ignored. reqCompletedOrders returns every finished order.
- Unknown message ids get error 505 and the connection stays open; malformed fields of a
  known request get error 320; framing garbage gets 505 and the socket is closed.
- Clients whose version range excludes 178 are disconnected right after the handshake.
"""

from ibsim.config import DEFAULT_ACCOUNT, DEFAULT_UNIVERSE, SimConfig
from ibsim.orders import Execution, OrderReceived
from ibsim.server import Simulator

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_UNIVERSE",
    "Execution",
    "OrderReceived",
    "SimConfig",
    "Simulator",
]
