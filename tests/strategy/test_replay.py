"""Replay: bars from a CSV or a loader, the signals and summary it prints, and its errors."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config import StrategySettings
from market_data.model import Bar
from strategy.base import signal_id
from strategy.csv_bars import BarFileError, load_csv_bars
from strategy.replay import configure_parser, run_replay
from tests.strategy.bars import bars_from_closes

HEADER = "timestamp,open,high,low,close,volume\n"
SMA_CLOSES = [10, 10, 10, 10, 13, 7, 20, 20, 20, 15, 14, 18]


def settings(**overrides: Any) -> StrategySettings:
    """Every strategy setting spelled out, so the environment cannot change a test."""
    values: dict[str, Any] = {
        "strategy": "sma_crossover",
        "strategy_params": {"fast_window": 2, "slow_window": 3},
        "strategy_quantity": 10,
        "strategy_bar_seconds": 60,
        "signal_ttl_seconds": 30,
        "strategy_max_failures": 5,
    }
    return StrategySettings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="replay")
    configure_parser(parser)
    return parser.parse_args(argv)


def write_csv(path: Path, closes: list[float]) -> Path:
    """Flat bars a minute apart from 14:30 UTC; odd rows as epoch seconds, even rows ISO."""
    lines = [HEADER]
    for bar in bars_from_closes(closes):
        stamp = bar.start.strftime("%Y-%m-%dT%H:%M:%SZ")
        if bar.start.minute % 2:
            stamp = str(int(bar.start.timestamp()))
        lines.append(f"{stamp},{bar.close},{bar.close},{bar.close},{bar.close},100\n")
    path.write_text("".join(lines))
    return path


def sma_id(minute: int, action: str) -> str:
    start = datetime(2024, 1, 2, 14, minute, tzinfo=UTC)
    return signal_id("sma_crossover", "AAPL", start, 60, action)  # type: ignore[arg-type]


def test_csv_rows_become_bars_with_iso_and_epoch_timestamps(tmp_path: Path) -> None:
    """Both timestamp forms are read as UTC bar starts; the bar length comes from the spacing."""
    path = write_csv(tmp_path / "bars.csv", [10, 11, 12])
    loaded = load_csv_bars(path, "AAPL", default_seconds=5)
    assert without_ids(loaded) == without_ids(bars_from_closes([10, 11, 12]))


def test_a_single_row_gets_the_default_bar_length(tmp_path: Path) -> None:
    """With no spacing to go by, a bar lasts STRATEGY_BAR_SECONDS."""
    path = write_csv(tmp_path / "bars.csv", [10])
    loaded = load_csv_bars(path, "AAPL", default_seconds=60)
    assert without_ids(loaded) == without_ids(bars_from_closes([10]))


def without_ids(bars: list[Bar]) -> list[Bar]:
    """Bars with the (random) event id blanked out, everything else kept."""
    return [replace(bar, id="") for bar in bars]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("2024-01-02T14:30:00Z,10,10,10,abc,100\n", "bars.csv:2: bad close 'abc'"),
        ("yesterday,10,10,10,10,100\n", "bars.csv:2: bad timestamp 'yesterday'"),
        (
            "1704205800000,10,10,10,10,100\n",
            "bars.csv:2: bad timestamp '1704205800000'"
            " (not a time in epoch seconds (milliseconds?))",
        ),
        ("2024-01-02T14:30:00Z,10,10,10,10\n", "bars.csv:2: bad volume ''"),
        ("2024-01-02T14:30:00Z,10,9,10,10,100\n", "bars.csv:2: bar prices must satisfy"),
        ("2024-01-02T14:30:00Z,10,10,10,-1,100\n", "bars.csv:2: close must be a positive"),
        (
            "2024-01-02T14:31:00Z,10,10,10,10,100\n2024-01-02T14:30:00Z,10,10,10,10,100\n",
            "bars.csv:3: timestamp 2024-01-02 14:30:00+00:00 is not after the last",
        ),
    ],
)
def test_a_bad_row_is_an_error_naming_its_line(tmp_path: Path, rows: str, message: str) -> None:
    """The first bad row stops the load with the file, the line and what is wrong."""
    path = tmp_path / "bars.csv"
    path.write_text(HEADER + rows)
    with pytest.raises(BarFileError) as raised:
        load_csv_bars(path, "AAPL")
    assert str(raised.value).startswith(f"{tmp_path}/{message}")


def test_a_missing_column_is_an_error_naming_it(tmp_path: Path) -> None:
    """The header must have every column."""
    path = tmp_path / "bars.csv"
    path.write_text("timestamp,open,high,low,close\n")
    with pytest.raises(BarFileError) as raised:
        load_csv_bars(path, "AAPL")
    assert str(raised.value) == f"{path}:1: missing column(s) volume"


def test_replay_prints_each_signal_and_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every signal with its assumed fill price and id, then trades, P&L, win rate, drawdown."""
    path = write_csv(tmp_path / "bars.csv", SMA_CLOSES)
    assert run_replay(parse("--symbol", "aapl", "--source", str(path)), settings()) == 0
    assert capsys.readouterr().out.splitlines() == [
        "2024-01-02T14:35:00+00:00  BUY  10 AAPL @ 13.0000"
        f"  fast SMA 11.5000 crossed above slow SMA 11.0000  id={sma_id(34, 'BUY')}",
        "2024-01-02T14:40:00+00:00  SELL 10 AAPL @ 15.0000"
        f"  fast SMA 17.5000 crossed below slow SMA 18.3333  id={sma_id(39, 'SELL')}",
        "2024-01-02T14:42:00+00:00  BUY  10 AAPL @ 18.0000"
        f"  fast SMA 16.0000 crossed above slow SMA 15.6667  id={sma_id(41, 'BUY')}",
        "sma_crossover on AAPL: 12 bars"
        " from 2024-01-02T14:30:00+00:00 to 2024-01-02T14:41:00+00:00",
        "signals: 3  trades closed: 1  open position: 10",
        "P&L: 20.00 (realized 20.00, unrealized 0.00)",
        "win rate: 100.0%  max drawdown: 60.00",
    ]


def test_replay_from_a_bar_loader_within_from_and_to(capsys: pytest.CaptureFixture[str]) -> None:
    """`--source db` reads through the given loader; --from/--to (a whole day) bound the bars."""
    asked: list[tuple[str, datetime | None, datetime | None]] = []

    def load_db_bars(symbol: str, start: datetime | None, end: datetime | None) -> list[Bar]:
        asked.append((symbol, start, end))
        return bars_from_closes(SMA_CLOSES, symbol=symbol)

    args = parse(
        "--symbol", "AAPL", "--source", "db", "--from", "2024-01-02T14:33:00Z", "--to", "2024-01-02"
    )
    assert run_replay(args, settings(), load_db_bars) == 0
    assert asked == [
        (
            "AAPL",
            datetime(2024, 1, 2, 14, 33, tzinfo=UTC),
            datetime(2024, 1, 2, 23, 59, 59, 999999, tzinfo=UTC),
        )
    ]
    assert capsys.readouterr().out.splitlines() == [
        "2024-01-02T14:37:00+00:00  BUY  10 AAPL @ 20.0000"
        f"  fast SMA 13.5000 crossed above slow SMA 13.3333  id={sma_id(36, 'BUY')}",
        "2024-01-02T14:40:00+00:00  SELL 10 AAPL @ 15.0000"
        f"  fast SMA 17.5000 crossed below slow SMA 18.3333  id={sma_id(39, 'SELL')}",
        "2024-01-02T14:42:00+00:00  BUY  10 AAPL @ 18.0000"
        f"  fast SMA 16.0000 crossed above slow SMA 15.6667  id={sma_id(41, 'BUY')}",
        "sma_crossover on AAPL: 9 bars from 2024-01-02T14:33:00+00:00 to 2024-01-02T14:41:00+00:00",
        "signals: 3  trades closed: 1  open position: 10",
        "P&L: -50.00 (realized -50.00, unrealized 0.00)",
        "win rate: 0.0%  max drawdown: 50.00",
    ]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.csv", "--source: no such file: missing.csv"),
        ("db", "--source db: no bar store is available to read from"),
    ],
)
def test_a_source_that_cannot_be_read_exits_2_with_one_line(
    source: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing file, or `db` where no store is wired, is bad usage: exit 2, one clear line."""
    assert run_replay(parse("--symbol", "AAPL", "--source", source), settings()) == 2
    assert capsys.readouterr() == ("", f"main.py replay: error: {message}\n")


def test_a_bad_csv_row_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI reports the loader's error in one line."""
    path = tmp_path / "bars.csv"
    path.write_text(HEADER + "2024-01-02T14:30:00Z,10,10,10,ten,100\n")
    assert run_replay(parse("--symbol", "AAPL", "--source", str(path)), settings()) == 2
    error = "could not convert string to float: 'ten'"
    expected = f"main.py replay: error: {path}:2: bad close 'ten' ({error})\n"
    assert capsys.readouterr() == ("", expected)


def test_an_empty_range_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing between --from and --to is said, not replayed as zero trades."""
    path = write_csv(tmp_path / "bars.csv", SMA_CLOSES)
    args = parse("--symbol", "AAPL", "--source", str(path), "--from", "2025-01-01")
    assert run_replay(args, settings()) == 2
    expected = f"main.py replay: error: no bars for AAPL in {path} in the given range\n"
    assert capsys.readouterr() == ("", expected)


def test_a_bad_from_is_refused_by_the_parser() -> None:
    """--from must be an ISO-8601 date or time (argparse exits 2)."""
    with pytest.raises(SystemExit) as raised:
        parse("--symbol", "AAPL", "--source", "x.csv", "--from", "yesterday")
    assert raised.value.code == 2


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--plot draws price, signals and equity into a PNG file."""
    path = write_csv(tmp_path / "bars.csv", SMA_CLOSES)
    picture = tmp_path / "replay.png"
    args = parse("--symbol", "AAPL", "--source", str(path), "--plot", str(picture))
    assert run_replay(args, settings()) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.splitlines()[-1] == f"plot written to {picture}"
