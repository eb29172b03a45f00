"""STRATEGY and STRATEGY_PARAMS: a bad one stops start-up with one line naming it."""

from __future__ import annotations

import pytest

from config import SettingsError, load_settings
from strategy.mean_reversion import MeanReversion, MeanReversionParams
from strategy.registry import build_strategy


@pytest.fixture(autouse=True)
def no_strategy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STRATEGY", "STRATEGY_PARAMS", "STRATEGY_QUANTITY", "SIGNAL_TTL_SECONDS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (
            {"STRATEGY": "moon_phase"},
            "STRATEGY: unknown strategy (known: mean_reversion, sma_crossover) (got 'moon_phase')",
        ),
        (
            {"STRATEGY_PARAMS": '{"fast_window": 0}'},
            "STRATEGY_PARAMS: sma_crossover fast_window: Input should be greater than or equal"
            " to 1 (got '{\"fast_window\": 0}')",
        ),
        (
            {"STRATEGY": "mean_reversion", "STRATEGY_PARAMS": '{"windw": 5}'},
            "STRATEGY_PARAMS: mean_reversion windw: Extra inputs are not permitted"
            " (got '{\"windw\": 5}')",
        ),
        (
            {"STRATEGY_PARAMS": '{"fast_window": 30, "slow_window": 10}'},
            "STRATEGY_PARAMS: sma_crossover: fast_window must be smaller than slow_window"
            ' (got \'{"fast_window": 30, "slow_window": 10}\')',
        ),
        (
            {"STRATEGY_PARAMS": "[1, 2]"},
            "STRATEGY_PARAMS: must be a JSON object, e.g. {\"fast_window\": 10} (got '[1, 2]')",
        ),
        (
            {"STRATEGY_PARAMS": "{fast_window: 3}"},
            "STRATEGY_PARAMS: not valid JSON: Expecting property name enclosed in double quotes:"
            " line 1 column 2 (char 1) (got '{fast_window: 3}')",
        ),
        ({"STRATEGY_QUANTITY": "0"}, "STRATEGY_QUANTITY: Input should be greater than 0 (got '0')"),
    ],
)
def test_a_bad_strategy_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], message: str
) -> None:
    """The settings loader refuses the strategy's own bad parameters, not only its types."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings(env_file=None)
    assert str(raised.value) == message


def test_good_settings_build_the_named_strategy_with_its_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """STRATEGY picks the class; STRATEGY_PARAMS fills its params model, defaults for the rest."""
    monkeypatch.setenv("STRATEGY", "mean_reversion")
    monkeypatch.setenv("STRATEGY_PARAMS", '{"window": 50}')
    strategy = build_strategy(load_settings(env_file=None).strategy)
    assert isinstance(strategy, MeanReversion)
    assert strategy.params == MeanReversionParams(window=50, entry_z=2.0, exit_z=0.0)
