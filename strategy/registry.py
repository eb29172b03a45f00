"""Strategies by name (the `STRATEGY` setting): adding one is one file plus one line here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from config import StrategySettings
from strategy.base import Strategy, StrategyParams
from strategy.mean_reversion import MeanReversion
from strategy.sma_crossover import SmaCrossover

STRATEGIES: dict[str, type[Strategy]] = {
    SmaCrossover.name: SmaCrossover,
    MeanReversion.name: MeanReversion,
}


def strategy_class(name: str) -> type[Strategy]:
    """The strategy called `name`; ValueError listing the known ones otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown strategy (known: {known})") from None


def validate_params(name: str, params: Mapping[str, Any]) -> StrategyParams:
    """`params` checked by strategy `name`'s own model; ValueError naming the bad parameter."""
    try:
        return strategy_class(name).Params.model_validate(params)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"{name} {where}: {message}" if where else f"{name}: {message}") from None


def build_strategy(settings: StrategySettings) -> Strategy:
    """The configured strategy, with its parameters, size and signal lifetime."""
    cls = strategy_class(settings.strategy)
    return cls(
        validate_params(settings.strategy, settings.strategy_params),
        quantity=settings.strategy_quantity,
        signal_ttl=timedelta(seconds=settings.signal_ttl_seconds),
    )
