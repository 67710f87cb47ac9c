"""The helper scripts of the embedded default."""

import importlib.util
import json
from pathlib import Path

import pytest


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_curve_is_plotted_and_tabulated(tmp_path, capsys):
    history = [
        {"loss": 5.0, "minutes": 0.5, "step": 10},
        {"eval_exact_match": 0.25, "eval_cer": 0.4, "minutes": 1.0, "step": 20},
        {"loss": 3.0, "minutes": 1.5, "step": 30},
        {"eval_exact_match": 0.5, "eval_cer": 0.2, "minutes": 2.0, "step": 40},
    ]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    load_script("plot_training_curve").main([str(tmp_path)])
    printed = capsys.readouterr().out
    assert "| 1.0 | 20 | 25.0 | 40.0 |" in printed and "| 2.0 | 40 | 50.0 | 20.0 |" in printed
    assert (tmp_path / "training_curve.png").stat().st_size > 0


def test_training_curve_without_a_log_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="trainer_state.json"):
        load_script("plot_training_curve").main([str(tmp_path)])
