"""Settings: defaults, one-line errors naming the variable, .env files and secret URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from config import Settings, SettingsError, load_settings, masked_url


def _setting_names() -> list[str]:
    """Every environment variable a setting is read from (prefix + field, upper-cased)."""
    names = []
    for section_field in Settings.model_fields.values():
        section = section_field.annotation
        prefix = section.model_config.get("env_prefix", "")  # type: ignore[union-attr]
        names += [(prefix + name).upper() for name in section.model_fields]  # type: ignore[union-attr]
    return names


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the developer's environment or a .env in the working directory."""
    for name in _setting_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_the_setting_names_include_the_contracts() -> None:
    """The variables CONTRACT.md names are all settings."""
    contract = {
        "REDIS_URL",
        "DATABASE_URL",
        "IB_HOST",
        "IB_PORT",
        "IB_CLIENT_ID",
        "TRADING_MODE",
        "SYMBOLS",
        "STRATEGY",
        "CHANNEL_PREFIX",
        "LOG_FORMAT",
        "LOG_LEVEL",
    }
    assert contract <= set(_setting_names())


def test_defaults_are_paper_mode_on_a_local_gateway() -> None:
    """With nothing set: paper trading, IB Gateway paper port, local Redis, SQLite, `trading`."""
    settings = load_settings(env_file=None)
    assert {
        "mode": settings.execution.trading_mode,
        "ib": (settings.ib.host, settings.ib.port, settings.ib.client_id),
        "redis": settings.bus.redis_url.get_secret_value(),
        "database": settings.storage.database_url.get_secret_value(),
        "prefix": settings.bus.channel_prefix,
        "symbols": settings.market_data.symbols,
        "strategy": settings.strategy.strategy,
        "log": (settings.log.log_format, settings.log.log_level),
    } == {
        "mode": "paper",
        "ib": ("127.0.0.1", 4002, 1),
        "redis": "redis://127.0.0.1:6379/0",
        "database": "sqlite:///trading.db",
        "prefix": "trading",
        "symbols": ("AAPL", "MSFT", "SPY"),
        "strategy": "sma_crossover",
        "log": ("auto", "INFO"),
    }


def test_the_default_env_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    """load_settings() with no argument reads ./.env."""
    (tmp_path / ".env").write_text("TRADING_MODE=live\nIB_PORT=4001\n")
    settings = load_settings()
    assert (settings.execution.trading_mode, settings.ib.port) == ("live", 4001)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TRADING_MODE", "bogus", "TRADING_MODE: Input should be 'paper' or 'live' (got 'bogus')"),
        ("TRADING_MODE", "LIVE", "TRADING_MODE: Input should be 'paper' or 'live' (got 'LIVE')"),
        (
            "IB_PORT",
            "abc",
            "IB_PORT: Input should be a valid integer, unable to parse string as an integer"
            " (got 'abc')",
        ),
        ("IB_PORT", "0", "IB_PORT: Input should be greater than or equal to 1 (got '0')"),
        ("IB_PORT", "65536", "IB_PORT: Input should be less than or equal to 65535 (got '65536')"),
        (
            "IB_CLIENT_ID",
            "-1",
            "IB_CLIENT_ID: Input should be greater than or equal to 0 (got '-1')",
        ),
        (
            "SYMBOLS",
            " , ",
            "SYMBOLS: needs at least one symbol, comma-separated (e.g. AAPL,MSFT) (got ' , ')",
        ),
        ("SYMBOLS", "AAPL,$$$", "SYMBOLS: not a symbol: '$$$' (got 'AAPL,$$$')"),
        (
            "REDIS_URL",
            "http://cache:6379/0",
            "REDIS_URL: must be a redis://, rediss:// or unix:// URL",
        ),
        (
            "REDIS_URL",
            "redis://cache:port/0",
            "REDIS_URL: Port could not be cast to integer value as 'port'",
        ),
        (
            "CHANNEL_PREFIX",
            "my prefix",
            "CHANNEL_PREFIX: String should match pattern '^[A-Za-z0-9_.-]+$' (got 'my prefix')",
        ),
        (
            "CHANNEL_PREFIX",
            "a:b",
            "CHANNEL_PREFIX: String should match pattern '^[A-Za-z0-9_.-]+$' (got 'a:b')",
        ),
        (
            "LOG_LEVEL",
            "loud",
            "LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR' (got 'LOUD')",
        ),
        (
            "LOG_FORMAT",
            "xml",
            "LOG_FORMAT: Input should be 'auto', 'console' or 'json' (got 'xml')",
        ),
        (
            "JOURNAL_MAXLEN",
            "10",
            "JOURNAL_MAXLEN: Input should be greater than or equal to 1000 (got '10')",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    """Each bad value raises SettingsError: one line, the variable first, what is allowed."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file=None)
    assert str(caught.value) == message


def test_symbols_are_split_on_commas_trimmed_and_upper_cased(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SYMBOLS=" aapl, msft ,,brk.b" means AAPL, MSFT and BRK.B."""
    monkeypatch.setenv("SYMBOLS", " aapl, msft ,,brk.b")
    assert load_settings(env_file=None).market_data.symbols == ("AAPL", "MSFT", "BRK.B")


def test_lower_case_log_level_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """LOG_LEVEL=debug means DEBUG."""
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert load_settings(env_file=None).log.log_level == "DEBUG"


def test_an_env_file_is_read(tmp_path: Path) -> None:
    """Settings come from the given .env file when the environment does not set them."""
    env_file = tmp_path / "custom.env"
    env_file.write_text(
        "TRADING_MODE=live\nSYMBOLS=spy,qqq\nCHANNEL_PREFIX=paper2\nIB_PORT=7497\n"
        "UNRELATED_NAME=ignored\n"
    )
    settings = load_settings(env_file=env_file)
    assert (
        settings.execution.trading_mode,
        settings.market_data.symbols,
        settings.bus.channel_prefix,
        settings.ib.port,
    ) == ("live", ("SPY", "QQQ"), "paper2", 7497)


def test_the_environment_beats_the_env_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A variable set in the environment wins over the same one in .env."""
    env_file = tmp_path / "custom.env"
    env_file.write_text("TRADING_MODE=live\nIB_PORT=7497\n")
    monkeypatch.setenv("TRADING_MODE", "paper")
    settings = load_settings(env_file=env_file)
    assert (settings.execution.trading_mode, settings.ib.port) == ("paper", 7497)


def test_a_bad_setting_in_the_env_file_names_the_variable(tmp_path: Path) -> None:
    """A bad value read from .env is reported like one from the environment."""
    env_file = tmp_path / "custom.env"
    env_file.write_text("IB_PORT=ninety\n")
    with pytest.raises(SettingsError, match=r"^IB_PORT: .*\(got 'ninety'\)$"):
        load_settings(env_file=env_file)


def test_passwords_never_appear_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    """REDIS_URL and DATABASE_URL passwords are secrets in every rendering of the settings."""
    monkeypatch.setenv("REDIS_URL", "redis://app:hunter2-redis@cache:6380/1")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://app:hunter2-db@db/trading")
    settings = load_settings(env_file=None)
    renderings = [repr(settings), str(settings), repr(settings.bus), str(settings.storage)]
    assert [text for text in renderings if "hunter2" in text] == []
    assert settings.bus.redis_url.get_secret_value() == "redis://app:hunter2-redis@cache:6380/1"


@pytest.mark.parametrize(
    "url", ["http://app:hunter2@cache:6379/0", "redis://app:hunter2@cache:port/0"]
)
def test_a_bad_redis_url_error_does_not_show_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """The one-line error about a bad REDIS_URL never echoes the URL's password."""
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file=None)
    assert str(caught.value).startswith("REDIS_URL: ")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://app:hunter2@cache:6380/1", "redis://app:***@cache:6380/1"),
        ("redis://:hunter2@cache", "redis://:***@cache"),
        ("rediss://app:hunter2@[::1]:6379/0", "rediss://app:***@[::1]:6379/0"),
        ("redis://app:hunter2@cache:port/0", "redis://app:***@cache:port/0"),
        ("redis://app:hun@ter2@cache/0", "redis://app:***@cache/0"),
        (
            "postgresql+psycopg://app:hunter2@db:5432/trading?sslmode=require",
            "postgresql+psycopg://app:***@db:5432/trading?sslmode=require",
        ),
        (
            "postgresql+psycopg://app@db/trading?sslmode=require&password=hunter2",
            "postgresql+psycopg://app@db/trading?sslmode=require&password=***",
        ),
        (
            "redis://cache/0?PASSWORD=hunter2&username=app",
            "redis://cache/0?PASSWORD=***&username=app",
        ),
        ("redis://u:a@cache/0?pass%77ord=b", "redis://u:***@cache/0?pass%77ord=***"),
        (
            "postgresql://db/t?options=-c%20search_path%3Dx&sslpassword=k&passfile=/p",
            "postgresql://db/t?options=-c%20search_path%3Dx&sslpassword=***&passfile=/p",
        ),
        ("redis://app:hunter2@[::1/0", "<unparseable URL>"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("redis://app@cache:6379/0", "redis://app@cache:6379/0"),
        ("sqlite:///trading.db", "sqlite:///trading.db"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_masked_url(url: str, masked: str) -> None:
    """masked_url hides the password, keeps everything else, leaves password-less URLs alone."""
    assert masked_url(url) == masked


def test_masked_url_takes_a_secret() -> None:
    """masked_url accepts the SecretStr the settings hold."""
    assert masked_url(SecretStr("redis://u:hunter2@h/0")) == "redis://u:***@h/0"


def test_strategy_bar_size_follows_market_data_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """STRATEGY_BAR_SECONDS defaults to BAR_SECONDS, so the strategy sees the bars made."""
    monkeypatch.setenv("BAR_SECONDS", "300")
    settings = load_settings(None)
    assert (settings.market_data.bar_seconds, settings.strategy.strategy_bar_seconds) == (300, 300)


def test_strategy_bar_size_that_contradicts_market_data_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two different bar sizes would leave the strategy without bars: refused at start-up."""
    monkeypatch.setenv("BAR_SECONDS", "300")
    monkeypatch.setenv("STRATEGY_BAR_SECONDS", "60")
    with pytest.raises(SettingsError) as refused:
        load_settings(None)
    assert str(refused.value).startswith("STRATEGY_BAR_SECONDS: 60 differs from BAR_SECONDS 300")


def test_env_example_lists_every_setting_and_loads_cleanly() -> None:
    """.env.example names each setting (derived ones commented) and is itself valid."""
    example = Path(__file__).resolve().parent.parent / ".env.example"
    named = {
        line.lstrip("# ").split("=", 1)[0]
        for line in example.read_text().splitlines()
        if "=" in line.lstrip("# ").split(" ", 1)[0]
    }
    assert set(_setting_names()) - named == set()
    settings = load_settings(example)
    assert settings.execution.trading_mode == "paper"
