"""experiments/grid.py: seeds grouped into multi-seed runs, and the report reading per-seed results from
summary.json's "seeds" (multi-seed runs) as well as from older single-seed run folders."""

import importlib.util
import json
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("grid", Path(__file__).resolve().parents[1] / "experiments" / "grid.py")
grid = sys.modules.setdefault("grid", importlib.util.module_from_spec(_spec))  # dataclasses look it up there
if not hasattr(grid, "Experiment"):
    _spec.loader.exec_module(grid)


def test_seed_runs_groups_consecutive_seeds():
    assert grid.seed_runs([0, 1, 2, 3, 4, 5, 6, 7]) == [(0, 8)]
    assert grid.seed_runs([5, 0, 1, 2]) == [(0, 3), (5, 1)]
    assert grid.seed_runs([3]) == [(3, 1)]


def _summary(scaled: float, seed: int | None = None, solved: bool | None = None) -> dict:
    test = {"scaled_accuracy": scaled, "accuracy_by_length": {"40-93": scaled, "94-147": scaled / 2}}
    return {"test": test, **({"seed": seed, "solved": solved} if seed is not None else {})}


def test_collect_reads_multi_seed_and_single_seed_runs(tmp_path):
    exp = grid.Experiment(name="t", config="configs/parity.py", settings={"a": ("A", []), "a-b": ("AB", [])})
    runs = {"a-seeds0-1": {**_summary(0.5), "seeds": [_summary(0.95, 0, True), _summary(0.05, 1, False)], "solved": 1},
            "a-s7": _summary(0.25),                     # a single-seed folder of an older version
            "a-b-seeds0-0": {**_summary(0.9), "seeds": [_summary(0.9, 0, True)], "solved": 1}}
    for name, summary in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "walltimes.jsonl").write_text(json.dumps({"run": "a-seeds0-1", "wall_s": 120.0}) + "\n")
    out = grid.collect(exp, tmp_path)
    assert out["a"]["seeds"] == ["0", "1", "7"]
    assert out["a"]["scaled"] == [0.95, 0.05, 0.25]
    assert out["a"]["solved"] == [True, False, None]
    assert out["a"]["wall_min"] == [2.0]
    assert out["a-b"]["seeds"] == ["0"] and out["a-b"]["solved"] == [True]
    assert grid.solved_text(out["a"]["solved"]) == "–"
    assert grid.solved_text([True, False, True]) == "2 / 3"
