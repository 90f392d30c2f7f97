"""experiments/methods.py: every method gets the same epoch budget over the same space, the curves
and the table come from each search's results.csv, and an interrupted bench resumes. Trainings
are instant (the `scored` fixture), so this checks the bench's bookkeeping, not its figures.
experiments/seeds.py: a command over seeds, resumed."""

import csv
import json
import math
import sys

import pytest

from conftest import ROOT, load_experiment


load_experiment("shared")
methods = load_experiment("methods")


def test_halving_gets_the_most_candidates_its_budget_pays_for():
    # 1, 3, 9 epochs; each rung keeps ceil(n/3): 45 + 15*3 + 5*9 = 135 <= 144 < 46 + 16*3 + 6*9
    assert methods.halving_cost(45, 9) == 135
    assert methods.halving_cost(46, 9) == 148
    assert methods.halving_candidates(144, 9) == 45
    # continuing, a promoted candidate trains only the extra epochs: 60 + 20*2 + 7*6 = 142 <= 144 < 61 + 21*2 + 7*6
    assert methods.halving_cost(60, 9, restart=False) == 142
    assert methods.halving_cost(61, 9, restart=False) == 145
    assert methods.halving_candidates(144, 9, restart=False) == 60


def test_the_grid_takes_each_ranges_quartiles_on_its_sampling_scale():
    assert methods.grid_levels(1e-4, 1e-1, "log") == [pytest.approx(10 ** -3.25, rel=0.02),
                                                       pytest.approx(10 ** -1.75, rel=0.02)]
    assert methods.grid_levels(1, 4, "int") == [2, 3]
    assert methods.grid_levels(16, 256, "log-int") == [32, 128]


def test_best_at_counts_only_trainings_finished_within_the_budget():
    curve = [(9, 0.5, 10.0), (18, 0.7, 30.0), (27, 0.7, 35.0), (36, 0.9, 60.0)]
    assert methods.best_at(curve, 20) == 0.7
    assert methods.best_at(curve, 36) == 0.9
    assert math.isnan(methods.best_at(curve, 5))
    assert methods.best_at(curve, 20, axis=2) == 0.5  # within 20 training seconds: only the first
    assert methods.best_at(curve, 60, axis=2) == 0.9


@pytest.mark.slow
def test_every_method_spends_the_same_budget_and_a_rerun_trains_nothing(data_dir, tmp_path, scored, capsys):
    out = tmp_path / "bench"
    argv = ["--data-dir", str(data_dir), "--image-size", "8", "--seeds", "1", "--epochs", "9", "--out", str(out),
            "--jobs", "1"]  # one seed: the seeds' loop is the two-jobs test's
    methods.main(argv)
    records = json.loads((out / "methods.json").read_text())
    assert sorted((r["method"], r["seed"]) for r in records) == sorted((m, 0) for m in methods.METHODS)
    for record in records:
        with open(out / f"{record['method']}-seed{record['seed']}" / "results.csv") as handle:
            rows = list(csv.DictReader(handle))
        spent = [int(r.get("epochs_run") or r["epochs"]) for r in rows]
        assert record["trainings"] == len(rows)
        if record["method"] == "halving-restart":
            assert sorted(spent) == [1] * 45 + [3] * 15 + [9] * 5  # 135 of the 144 epochs
        elif record["method"] == "halving":  # continuing: 2 more epochs to reach 3, 6 more to reach 9
            assert sorted(spent) == [1] * 60 + [2] * 20 + [6] * 7  # 142 of the 144 epochs
        else:
            assert spent == [9] * 16
        best = json.loads((out / f"{record['method']}-seed{record['seed']}" / "best.json").read_text())
        assert (best["hparams"]["epochs"], best["hparams"]["patience"]) == (9, 9), "final models train alike"
        if not record["method"].startswith("halving"):  # halving's best.json holds its top rung's best
            assert record["curve"][-1][1] == pytest.approx(best["val_accuracy"])
    grid = json.loads((out / "grid-seed0" / "search.json").read_text())["space"]
    assert set(grid) == set(methods.SPACE)
    table = (out / "methods.txt").read_text()
    for method in methods.METHODS:
        assert method in table
    assert (out / "methods.png").stat().st_size > 0 and (out / "methods-seconds.png").stat().st_size > 0
    asked = len(scored)
    capsys.readouterr()
    methods.main(argv)
    assert len(scored) == asked, "a finished bench is read back, not trained again"
    assert (out / "methods.txt").read_text() == table


seeds = load_experiment("seeds")


@pytest.mark.parametrize("argv", [["--epochs", "5"], ["--methods", "grid,annealing"], ["--data-dir", "nowhere"],
                                  ["--data-dir", ""]])
def test_methods_refuses_a_budget_it_cannot_share_fairly(tmp_path, argv):
    with pytest.raises(SystemExit) as stop:
        methods.main(["--out", str(tmp_path / "b"), *argv])
    assert stop.value.code == 2
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_seeds_runs_a_command_per_seed_and_resumes(data_dir, tmp_path, capsys):
    out = tmp_path / "seeds"
    argv = ["--seeds", "2", "--out", str(out), "--", "train_bn.py", "--data-dir", str(data_dir), "--image-size", "8",
            "--epochs", "1", "--units", "4", "--compare"]
    seeds.main(argv)
    for seed in (0, 1):
        for model in ("baseline", "bn"):
            metrics = json.loads((out / f"seed{seed}" / model / "metrics.json").read_text())
            assert metrics["seed"] == seed
    table = (out / "seeds.txt").read_text()
    assert "baseline" in table and "bn" in table and "--compare" in table
    capsys.readouterr()
    stamp = (out / "seed0" / "bn" / "metrics.json").stat().st_mtime_ns
    seeds.main(argv)
    assert (out / "seed0" / "bn" / "metrics.json").stat().st_mtime_ns == stamp, "finished seeds are read back"
    assert "(read back)" in capsys.readouterr().out
    (out / "seed1" / "bn" / "metrics.json").unlink()  # a seed cut short is run again
    seeds.main(argv)
    assert (out / "seed1" / "bn" / "metrics.json").exists()
    with pytest.raises(SystemExit) as stop:  # another command's folder
        seeds.main([*argv[:-1]])
    assert stop.value.code == 2


def test_seeds_reads_a_final_model_trained_on_validation_as_having_no_score_there(tmp_path):
    (tmp_path / "best.json").write_text(json.dumps({"final_val_accuracy": None, "test_accuracy": 0.95,
                                                    "final_epochs": 150, "search_seconds": 60.0}))
    found = seeds.results(tmp_path)["best"]
    assert found["val_accuracy"] is None
    assert seeds.spread([0.9, found["val_accuracy"]]) == "trained on it"
    assert seeds.spread([0.9, 0.8, 1.0]) == "0.9000 [0.8000-1.0000]"


@pytest.mark.parametrize("command", [["--", "train_bn.py", "--seed", "3"], ["--", "nothing.py"], []])
def test_seeds_refuses_what_it_cannot_run(tmp_path, command):
    with pytest.raises(SystemExit) as stop:
        seeds.main(["--out", str(tmp_path / "s"), *command])
    assert stop.value.code == 2
    assert not (tmp_path / "s").exists()


def test_with_two_jobs_each_search_is_its_script_run_as_a_program_with_half_the_cores(tmp_path):
    """--jobs N runs each search as `python <script>.py FLAGS --threads-per-trial T` in a fresh
    process, T the cores shared out between the N searches; the flags are the script's own
    (parsed here as the script parses them; nothing runs)."""
    import argparse
    import os

    from beans_tune.tuning import methods as searches
    from beans_tune.tuning.run import prepare

    args = argparse.Namespace(image_size=8, epochs=9, data_dir=None)
    threads = max(1, (os.cpu_count() or 1) // 2)
    for method, kind in [("grid", searches.Grid), ("random", searches.Random), ("bayes", searches.Bayes),
                         ("halving", searches.Random), ("halving-restart", searches.Random)]:
        script, argv = methods.method_argv(method, args, 1, tmp_path / method)
        command = methods.search_command(script, argv, jobs=2)
        assert command[:2] == [sys.executable, str(ROOT / f"{script}.py")] and (ROOT / f"{script}.py").is_file()
        assert command[-2:] == ["--threads-per-trial", str(threads)]
        setup = prepare(command[2:], kind())
        assert (setup.settings.threads_per_trial, setup.args.seed, setup.out) == (threads, 1, tmp_path / method)
