"""experiments/side_by_side.py: the three methods in one table, from their folders' best.json."""

import importlib.util
import json

from conftest import ROOT

spec = importlib.util.spec_from_file_location("side_by_side", ROOT / "experiments" / "side_by_side.py")
side_by_side = importlib.util.module_from_spec(spec)
spec.loader.exec_module(side_by_side)


def best(folder, script, params, val, test, trainings, search_seconds, **more):
    folder.mkdir()
    (folder / "best.json").write_text(json.dumps({
        "script": script, "params": params, "val_accuracy": val, "test_accuracy": test, "test_images": 128,
        "trainings": trainings, "search_seconds": search_seconds, **more}))
    return str(folder)


def test_one_row_per_search_with_its_test_error_and_wall_time(tmp_path, capsys):
    grid = best(tmp_path / "grid", "tune_grid", {"learning_rate": 0.003, "layers": 4}, 0.9474, 0.96875, 8, 900.0,
                final_seconds=300.0)
    bayes = best(tmp_path / "bayes", "tune_bayes", {"learning_rate": 0.00123}, 0.9323, 0.9375, 8, 1000.0)
    assert side_by_side.main([grid, bayes]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["method", "best"]
    assert lines[2].split() == ["tune_grid.py", "learning_rate=0.003", "layers=4", "0.9474", "0.9688", "±", "0.0170",
                                "8", "20m00s"]
    assert lines[3].split()[-1] == "-"  # a best.json written before final_seconds: no wall time, not a guess


def test_a_folder_without_a_finished_search_is_one_line(tmp_path, capsys):
    (tmp_path / "running").mkdir()
    assert side_by_side.main([str(tmp_path / "running")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert "running/best.json: not a finished search's best.json" in captured.err


def test_a_halving_or_refined_search_is_named_so(tmp_path, capsys):
    halving = best(tmp_path / "halving", "tune_random", {"units": 40}, 0.9, 0.9, 13, 600.0, final_seconds=60.0)
    (tmp_path / "halving" / "search.json").write_text(json.dumps({"method": {"halving": [1, 3, "continue"],
                                                                           "refine": 0, "cv": None}}))
    refined = best(tmp_path / "refined", "tune_random", {"units": 40}, 0.9, 0.9, 16, 600.0, final_seconds=60.0)
    (tmp_path / "refined" / "search.json").write_text(json.dumps({"method": {"refine": 1, "cv": 5}}))
    odd = best(tmp_path / "odd", "tune_random", {"units": 40}, 0.9, 0.9, 8, 600.0, final_seconds=60.0)
    (tmp_path / "odd" / "search.json").write_text(json.dumps({"method": "random"}))  # not what a search writes
    assert side_by_side.main([halving, refined, odd]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("tune_random.py --halving  ")
    assert lines[3].startswith("tune_random.py --refine 1 --cv 5  ")
    assert lines[4].startswith("tune_random.py  ")
