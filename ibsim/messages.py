"""Field layouts of every message the simulator sends, and the one encoder that uses them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ibsim.wire import SERVER_VERSION, encode_frame

CONTRACT_FIELDS = (
    "conId symbol secType lastTradeDate strike right multiplier exchange currency localSymbol "
    "tradingClass"
)
PORTFOLIO_CONTRACT_FIELDS = CONTRACT_FIELDS.replace("exchange", "primaryExchange")

_OPEN_ORDER_FIELDS = (
    f"orderId {CONTRACT_FIELDS} action totalQuantity orderType lmtPrice auxPrice tif ocaGroup "
    "account openClose origin orderRef clientId permId outsideRth hidden discretionaryAmt "
    "goodAfterTime sharesAllocation faGroup faMethod faPercentage "
    "modelCode goodTillDate rule80A percentOffset settlingFirm shortSaleSlot designatedLocation "
    "exemptCode auctionStrategy startingPrice stockRefPrice delta stockRangeLower "
    "stockRangeUpper displaySize blockOrder sweepToFill allOrNone minQty ocaType eTradeOnly "
    "firmQuoteOnly nbboPriceCap parentId triggerMethod volatility volatilityType "
    "deltaNeutralOrderType deltaNeutralAuxPrice "
    "continuousUpdate referencePriceType trailStopPrice trailingPercent basisPoints "
    "basisPointsType comboLegsDescrip comboLegCount orderComboLegCount smartComboParamCount "
    "scaleInitLevelSize scaleSubsLevelSize scalePriceIncrement hedgeType optOutSmartRouting "
    "clearingAccount clearingIntent notHeld deltaNeutralContractPresent algoStrategy "
    "solicited whatIf status initMarginBefore maintMarginBefore equityWithLoanBefore "
    "initMarginChange maintMarginChange equityWithLoanChange initMarginAfter maintMarginAfter "
    "equityWithLoanAfter commission minCommission maxCommission commissionCurrency warningText "
    "randomizeSize randomizePrice conditionCount "
    "adjustedOrderType triggerPrice trailStopPrice lmtPriceOffset adjustedStopPrice "
    "adjustedStopLimitPrice adjustedTrailingAmount adjustableTrailingUnit softDollarTierName "
    "softDollarTierValue softDollarTierDisplayName cashQty dontUseAutoPriceForHedge "
    "isOmsContainer discretionaryUpToLimitPrice usePriceMgmtAlgo duration postToAts "
    "autoCancelParent minTradeQty minCompeteSize competeAgainstBestOffset midOffsetAtWhole "
    "midOffsetAtHalf"
)

_COMPLETED_ORDER_FIELDS = (
    f"{CONTRACT_FIELDS} action totalQuantity orderType lmtPrice auxPrice tif ocaGroup account "
    "openClose origin orderRef permId outsideRth hidden discretionaryAmt goodAfterTime faGroup "
    "faMethod faPercentage "
    "modelCode goodTillDate rule80A percentOffset settlingFirm shortSaleSlot designatedLocation "
    "exemptCode startingPrice stockRefPrice delta stockRangeLower stockRangeUpper displaySize "
    "sweepToFill allOrNone minQty ocaType triggerMethod volatility volatilityType "
    "deltaNeutralOrderType deltaNeutralAuxPrice "
    "continuousUpdate referencePriceType trailStopPrice trailingPercent comboLegsDescrip "
    "comboLegCount orderComboLegCount smartComboParamCount "
    "scaleInitLevelSize scaleSubsLevelSize scalePriceIncrement hedgeType "
    "clearingAccount clearingIntent notHeld deltaNeutralContractPresent algoStrategy "
    "solicited status randomizeSize randomizePrice conditionCount "
    "trailStopPrice lmtPriceOffset cashQty dontUseAutoPriceForHedge isOmsContainer "
    "autoCancelDate filledQuantity refFuturesConId autoCancelParent shareholder imbalanceOnly "
    "routeMarketableToBbo parentPermId completedTime completedStatus "
    "minTradeQty minCompeteSize competeAgainstBestOffset midOffsetAtWhole midOffsetAtHalf"
)

# Counts and flags the decoder passes to int(): they must be "0", never empty.
_ORDER_DEFAULTS: Mapping[str, object] = {
    "comboLegCount": 0,
    "orderComboLegCount": 0,
    "smartComboParamCount": 0,
    "deltaNeutralContractPresent": 0,
    "conditionCount": 0,
    "whatIf": 0,
    "outsideRth": 0,
    "hidden": 0,
    "parentId": 0,
    "solicited": 0,
    "randomizeSize": 0,
    "randomizePrice": 0,
}


@dataclass(frozen=True, slots=True)
class Layout:
    """One outgoing message: its id, its version field (None when it has none), its fields."""

    message_id: int
    version: int | None
    field_names: str
    defaults: Mapping[str, object] = field(default_factory=dict)

    def header(self) -> tuple[object, ...]:
        return (self.message_id,) if self.version is None else (self.message_id, self.version)

    def names(self) -> list[str]:
        return self.field_names.split()


# message name -> layout at server version 178; see IB_PROTOCOL.md for each one
LAYOUTS: Mapping[str, Layout] = {
    "tick_price": Layout(1, 6, "reqId tickType price size attrMask", {"attrMask": 0}),
    "tick_size": Layout(2, 6, "reqId tickType size"),
    "order_status": Layout(
        3,
        None,
        "orderId status filled remaining avgFillPrice permId parentId lastFillPrice clientId "
        "whyHeld mktCapPrice",
        {"parentId": 0, "whyHeld": "", "mktCapPrice": 0.0},
    ),
    "error": Layout(4, 2, "reqId code message advancedOrderRejectJson"),
    "open_order": Layout(5, None, _OPEN_ORDER_FIELDS, _ORDER_DEFAULTS),
    "account_value": Layout(6, 2, "key value currency account"),
    "portfolio_value": Layout(
        7,
        8,
        f"{PORTFOLIO_CONTRACT_FIELDS} position marketPrice marketValue averageCost "
        "unrealizedPNL realizedPNL account",
    ),
    "account_time": Layout(8, 1, "time"),
    "next_valid_id": Layout(9, 1, "orderId"),
    "contract_details": Layout(
        10,
        None,
        "reqId symbol secType lastTimes strike right exchange currency localSymbol marketName "
        "tradingClass conId minTick multiplier orderTypes validExchanges priceMagnifier "
        "underConId longName primaryExchange contractMonth industry category subcategory "
        "timeZoneId tradingHours liquidHours evRule evMultiplier secIdCount aggGroup "
        "underSymbol underSecType marketRuleIds realExpirationDate stockType minSize "
        "sizeIncrement suggestedSizeIncrement",
        {"secIdCount": 0},
    ),
    "exec_details": Layout(
        11,
        None,
        f"reqId orderId {CONTRACT_FIELDS} execId time account exchange side shares price "
        "permId clientId liquidation cumQty avgPrice orderRef evRule evMultiplier modelCode "
        "lastLiquidity pendingPriceRevision",
        {"liquidation": 0, "lastLiquidity": 1, "pendingPriceRevision": 0},
    ),
    "managed_accounts": Layout(15, 1, "accounts"),
    "historical_data_update": Layout(
        90, None, "reqId barCount date open close high low wap volume"
    ),
    "tick_string": Layout(46, 6, "reqId tickType value"),
    "current_time": Layout(49, 1, "time"),
    "realtime_bar": Layout(50, 3, "reqId time open high low close volume wap count"),
    "contract_details_end": Layout(52, 1, "reqId"),
    "open_order_end": Layout(53, 1, ""),
    "account_download_end": Layout(54, 1, "account"),
    "exec_details_end": Layout(55, 1, "reqId"),
    "tick_snapshot_end": Layout(57, 1, "reqId"),
    "market_data_type": Layout(58, 1, "reqId marketDataType"),
    "commission_report": Layout(
        59, 1, "execId commission currency realizedPNL yield yieldRedemptionDate"
    ),
    "position": Layout(61, 3, f"account {CONTRACT_FIELDS} position avgCost"),
    "position_end": Layout(62, 1, ""),
    "account_summary": Layout(63, 1, "reqId account tag value currency"),
    "account_summary_end": Layout(64, 1, "reqId"),
    "account_update_multi": Layout(73, 1, "reqId account modelCode key value currency"),
    "account_update_multi_end": Layout(74, 1, "reqId"),
    "completed_order": Layout(101, None, _COMPLETED_ORDER_FIELDS, _ORDER_DEFAULTS),
    "completed_orders_end": Layout(102, None, ""),
}

_FIELD_NAMES = {name: layout.names() for name, layout in LAYOUTS.items()}
HISTORICAL_BAR_FIELDS = ("date", "open", "high", "low", "close", "volume", "wap", "count")


def encode(message: str, values: Mapping[str, object]) -> bytes:
    """Frame `message` with `values` by name; names absent from `values` use the layout's
    default, else an empty field."""
    layout = LAYOUTS[message]
    defaults = layout.defaults
    fields = [values.get(name, defaults.get(name, "")) for name in _FIELD_NAMES[message]]
    return encode_frame((*layout.header(), *fields))


def encode_historical_data(
    req_id: int, start: str, end: str, bars: Sequence[Mapping[str, object]]
) -> bytes:
    """historicalData (17): a header, then HISTORICAL_BAR_FIELDS repeated for every bar."""
    fields: list[object] = [17, req_id, start, end, len(bars)]
    for bar in bars:
        fields += [bar[name] for name in HISTORICAL_BAR_FIELDS]
    return encode_frame(fields)


def encode_server_version(connection_time: str) -> bytes:
    """The handshake answer: exactly two fields, the version and the connection time."""
    return encode_frame((SERVER_VERSION, connection_time))
