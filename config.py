"""Settings: one root with a section per package, from the environment and `.env`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_ENV_FILE = Path(".env")


class SettingsError(ValueError):
    """A bad setting, said in one line that names it."""


def _json_setting(value: Any, kind: type[list[Any]] | type[dict[str, Any]], example: str) -> Any:
    """A setting given as JSON text (a list or an object), parsed; anything else as it is."""
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value or ("[]" if kind is list else "{}"))
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON: {error}") from None
    if not isinstance(parsed, kind):
        raise ValueError(f"must be a JSON {'list' if kind is list else 'object'}, e.g. {example}")
    return parsed


class _Section(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=DEFAULT_ENV_FILE, env_file_encoding="utf-8", extra="ignore", frozen=True
    )


class BusSettings(_Section):
    """`event_bus/`: where Redis is and how the bus behaves."""

    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    channel_prefix: str = Field("trading", pattern=r"^[A-Za-z0-9_.-]+$")
    journal_maxlen: int = Field(1_000_000, ge=1_000)
    bus_outbox_capacity: int = Field(100_000, ge=100)
    bus_queue_size: int = Field(10_000, ge=10)
    bus_linger_ms: float = Field(2.0, ge=0, le=100)
    redis_timeout_seconds: float = Field(5.0, gt=0)
    bus_reconnect_cap_seconds: float = Field(30.0, gt=0)
    heartbeat_seconds: float = Field(5.0, gt=0)  # a module silent 3x this long is reported missing

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        _ = parts.port  # raises ValueError on a port that is not a number in 0-65535
        return value


class IBSettings(_Section):
    """The TWS / IB Gateway connection (`IB_*`)."""

    model_config = SettingsConfigDict(env_prefix="IB_")

    host: str = "127.0.0.1"
    port: int = Field(4002, ge=1, le=65535)
    client_id: int = Field(1, ge=0)
    connect_timeout_seconds: float = Field(10.0, gt=0)
    # Reconnect attempts back off up to this: after a Gateway restart, data resumes within it.
    reconnect_cap_seconds: float = Field(10.0, gt=0)


class InstrumentSetting(BaseModel):
    """One entry of `INSTRUMENTS`: a contract that is not a plain US stock (futures, forex)."""

    model_config = {"frozen": True, "extra": "forbid"}

    symbol: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.\- ]{0,20}$")
    sec_type: Literal["STK", "FUT", "CASH", "IND", "CFD", "CRYPTO"] = "STK"
    exchange: str = "SMART"
    currency: str = "USD"
    last_trade_date: str = Field("", pattern=r"^(\d{6}|\d{8})?$")  # YYYYMM or YYYYMMDD
    local_symbol: str = ""
    trading_class: str = ""
    primary_exchange: str = ""
    multiplier: str = ""
    name: str = Field("", pattern=r"^([A-Za-z0-9][A-Za-z0-9.\-]{0,30})?$")  # symbol on the bus


class MarketDataSettings(_Section):
    """`market_data/`: what to subscribe to, and when a silent feed counts as stale."""

    symbols: Annotated[tuple[str, ...], NoDecode] = ("AAPL", "MSFT", "SPY")
    # JSON list of InstrumentSetting objects, subscribed besides SYMBOLS
    instruments: Annotated[tuple[InstrumentSetting, ...], NoDecode] = ()
    market_data_ticks: bool = True  # reqMktData per instrument
    market_data_bars: bool = True  # 5-second real-time bars, aggregated to BAR_SECONDS
    bar_seconds: int = Field(60, ge=5)  # a multiple of 5
    market_data_type: Literal["live", "frozen", "delayed", "delayed_frozen"] = "live"
    stale_after_factor: float = Field(10.0, ge=0)  # 0: no staleness watchdog
    expected_tick_interval_seconds: float = Field(1.0, gt=0)
    expected_bar_interval_seconds: float = Field(5.0, gt=0)  # IB sends a real-time bar every 5 s
    market_data_request_timeout_seconds: float = Field(10.0, gt=0)  # qualifying contracts

    @field_validator("instruments", mode="before")
    @classmethod
    def _parse_instruments(cls, value: Any) -> Any:
        return _json_setting(value, list, '[{"symbol":"ES","sec_type":"FUT",...}]')

    @field_validator("bar_seconds")
    @classmethod
    def _whole_real_time_bars(cls, value: int) -> int:
        if value % 5:
            raise ValueError("must be a multiple of 5 (IB's real-time bars last 5 seconds)")
        return value

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip().upper() for part in value.split(",") if part.strip()]
        if not value:
            raise ValueError("needs at least one symbol, comma-separated (e.g. AAPL,MSFT)")
        bad = [s for s in value if not re.fullmatch(r"[A-Z0-9][A-Z0-9.\- ]{0,20}", s)]
        if bad:
            raise ValueError(f"not a symbol: {', '.join(map(repr, bad))}")
        return tuple(value)


class StrategySettings(_Section):
    """`strategy/`: which strategy runs, with what parameters, on which bars, at what size."""

    strategy: str = "sma_crossover"
    strategy_params: Annotated[dict[str, Any], NoDecode] = Field(default_factory=dict)
    strategy_quantity: float = Field(10.0, gt=0)
    strategy_bar_seconds: int = Field(60, ge=1)
    signal_ttl_seconds: float = Field(30.0, gt=0)
    strategy_max_failures: int = Field(5, ge=1)

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        from strategy.registry import strategy_class  # imported late: strategy imports config

        strategy_class(value)
        return value

    @field_validator("strategy_params", mode="before")
    @classmethod
    def _parse_json(cls, value: Any) -> Any:
        return _json_setting(value, dict, '{"fast_window": 10}')

    @field_validator("strategy_params")
    @classmethod
    def _params_fit_strategy(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from strategy.registry import validate_params

        if "strategy" in info.data:  # else STRATEGY itself is already reported as bad
            validate_params(info.data["strategy"], value)
        return value


class ExecutionSettings(_Section):
    """`execution/`: paper or live, and what guards the orders."""

    trading_mode: Literal["paper", "live"] = "paper"
    live_account: str = ""  # live mode only: the one account id allowed to trade
    dry_run: bool = False  # everything but placeOrder; what would be sent is published
    # "*" allows every symbol; otherwise comma-separated, e.g. AAPL,MSFT
    allowed_symbols: Annotated[tuple[str, ...], NoDecode] = ("AAPL", "MSFT", "SPY")
    max_order_quantity: float = Field(1_000.0, gt=0)  # shares per order
    max_order_notional: float = Field(50_000.0, gt=0)  # quantity x price per order
    max_position_per_symbol: float = Field(2_000.0, gt=0)  # absolute shares, open orders counted
    max_gross_exposure: float = Field(250_000.0, gt=0)  # sum of |position| x price, all symbols
    daily_loss_limit: float = Field(5_000.0, gt=0)  # realized + unrealized; hitting it halts
    max_orders_per_second: int = Field(5, ge=1)
    max_orders_per_minute: int = Field(60, ge=1)
    signal_max_age_seconds: float = Field(60.0, gt=0)  # for signals without expires_at
    commission_wait_seconds: float = Field(1.0, ge=0)  # hold a fill this long for its commission
    broker_sync_timeout_seconds: float = Field(10.0, gt=0)  # each reconciliation request
    guard_timeout_seconds: float = Field(30.0, gt=0)  # start waits this long for the guard check

    @field_validator("allowed_symbols", mode="before")
    @classmethod
    def _split_allowed(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip().upper() for part in value.split(",") if part.strip()]
        if not value:
            raise ValueError('needs at least one symbol, or "*" for any')
        return tuple(value)


class StorageSettings(_Section):
    """`storage/`: where events are persisted (a SQLite or PostgreSQL SQLAlchemy URL)."""

    database_url: SecretStr = SecretStr("sqlite:///trading.db")
    storage_batch_size: int = Field(5_000, ge=1, le=10_000)  # journal entries per transaction
    storage_consumer: str = Field("storage", pattern=r"^[A-Za-z0-9_.:-]+$")  # in group "storage"
    storage_block_ms: int = Field(1_000, ge=10)  # how long one journal read waits for entries
    storage_stop_timeout_seconds: float = Field(10.0, gt=0)  # to finish the batch in hand
    tick_retention_days: float = Field(0.0, ge=0)  # ticks older are deleted hourly; 0: keep all

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme.partition("+")[0] not in ("sqlite", "postgresql"):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return value


class LogSettings(_Section):
    """Logging: console on a terminal, JSON lines otherwise, unless `LOG_FORMAT` says."""

    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class MetricsSettings(_Section):
    """Prometheus metrics: `METRICS_PORT` opens `/metrics` on `METRICS_HOST` (0: no metrics)."""

    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"


class Settings(BaseModel):
    """The root: each package is handed only its own section by `main.py`."""

    model_config = {"frozen": True}

    bus: BusSettings
    ib: IBSettings
    market_data: MarketDataSettings
    strategy: StrategySettings
    execution: ExecutionSettings
    storage: StorageSettings
    log: LogSettings
    metrics: MetricsSettings


_SECTIONS: dict[str, type[_Section]] = {
    "bus": BusSettings,
    "ib": IBSettings,
    "market_data": MarketDataSettings,
    "strategy": StrategySettings,
    "execution": ExecutionSettings,
    "storage": StorageSettings,
    "log": LogSettings,
    "metrics": MetricsSettings,
}


def load_settings(env_file: Path | None = DEFAULT_ENV_FILE) -> Settings:
    """Read every section; raises `SettingsError` naming the first bad setting."""
    sections = {}
    for name, section in _SECTIONS.items():
        try:
            sections[name] = section(_env_file=env_file)  # type: ignore[call-arg]
        except ValidationError as error:
            raise SettingsError(_one_line(section, error)) from None
    settings = Settings.model_validate(sections)
    strategy = _strategy_bars_follow_market_data(settings.strategy, settings.market_data)
    return settings.model_copy(update={"strategy": strategy})


def _strategy_bars_follow_market_data(
    strategy: StrategySettings, market_data: MarketDataSettings
) -> StrategySettings:
    """The strategy sees only the bars market data makes: one size, stated once."""
    if "strategy_bar_seconds" not in strategy.model_fields_set:
        return strategy.model_copy(update={"strategy_bar_seconds": market_data.bar_seconds})
    if strategy.strategy_bar_seconds != market_data.bar_seconds:
        raise SettingsError(
            f"STRATEGY_BAR_SECONDS: {strategy.strategy_bar_seconds} differs from BAR_SECONDS "
            f"{market_data.bar_seconds}; the strategy would never see a bar (leave it unset)"
        )
    return strategy


def _one_line(section: type[_Section], error: ValidationError) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    env_name = (section.model_config.get("env_prefix", "") + field).upper()
    given = first.get("input")
    shown = "" if isinstance(given, dict) or field.endswith("url") else f" (got {given!r})"
    message = first["msg"].removeprefix("Value error, ")
    return f"{env_name}: {message}{shown}"


def masked_url(url: SecretStr | str) -> str:
    """The URL with its password replaced by `***`, fit for a log line: the one in the userinfo
    and any query parameter that carries one (`?password=`, which libpq and redis-py both take,
    `sslpassword`, a token or a secret)."""
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    try:
        parts = urlsplit(raw)
    except ValueError:  # e.g. an unclosed IPv6 bracket: show nothing that could be the password
        return "<unparseable URL>"
    masked = parts._replace(query=_masked_query(parts.query))
    # Split the netloc by hand: `hostname`/`port` would drop IPv6 brackets or raise on a bad port.
    userinfo, at, host_and_port = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.partition(":")[0]
        masked = masked._replace(netloc=f"{user}:***@{host_and_port}")
    return raw if masked == parts else urlunsplit(masked)


_SECRET_PARAMETER = re.compile(r"password|passwd|secret|token", re.IGNORECASE)


def _masked_query(query: str) -> str:
    """The query string with the value of each secret-bearing parameter replaced by `***`; the
    rest is kept byte for byte."""
    pieces = query.split("&")
    for index, piece in enumerate(pieces):
        name, equals, _ = piece.partition("=")
        if equals and _SECRET_PARAMETER.search(unquote_plus(name)):
            pieces[index] = f"{name}=***"
    return "&".join(pieces)
