"""Which hyperparameters matter (tuning.importance): shares of the scores' spread, read against
chance and noise, and printed after a search's ranked table; experiments/importance.py reads it
from search folders."""

import importlib.util

import numpy as np
import pytest

import tune_grid
import tune_random
from beans_tune.tuning import importance
from beans_tune.tuning.space import Dim
from beans_tune.tuning.store import Trial
from conftest import ROOT

# the folder command (experiments/importance.py), loaded from its file
spec = importlib.util.spec_from_file_location("importance_folders", ROOT / "experiments" / "importance.py")
folders = importlib.util.module_from_spec(spec)
spec.loader.exec_module(folders)

LR = Dim("learning_rate", low=1e-4, high=1e-1)
LAYERS = Dim("layers", choices=(2, 3, 4))
UNITS = Dim("units", low=16, high=256)


def trials(rows):
    return [Trial(params=p, val_accuracy=s, std=float("nan"), fit_seconds=1.0) for p, s in rows]


def test_the_hyperparameter_that_sets_the_score_takes_its_spread():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        layers = (2, 3, 4)[i % 3]
        lr = float(10 ** rng.uniform(-4, -1))
        rows.append(({"learning_rate": lr, "layers": layers}, 0.5 + 0.1 * layers + rng.normal(0, 0.002)))
    found = importance.effects(trials(rows), [LR, LAYERS], images=1000)
    assert [e.name for e in found] == ["layers", "learning_rate"]
    layers, lr = found
    assert layers.share > 0.99 and layers.reading == "stands out" and layers.best == "4"
    assert layers.groups == ("2", "3", "4") and layers.counts == (10, 10, 10) and not layers.thirds
    assert lr.share < 0.2 and lr.reading != "stands out"
    assert lr.thirds and lr.counts == (10, 10, 10)
    assert lr.chance == pytest.approx(2 / 29) and layers.spread == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_p_value_is_the_one_way_anovas(seed):
    from scipy import stats

    rng = np.random.default_rng(seed)
    layers = [(2, 3, 4)[i % 3] for i in range(15)]
    scores = [0.7 + 0.01 * n + rng.normal(0, 0.02) for n in layers]
    (effect,) = importance.effects(trials([({"layers": n}, s) for n, s in zip(layers, scores)]), [LAYERS])
    groups = [[s for n, s in zip(layers, scores) if n == g] for g in (2, 3, 4)]
    assert effect.p == pytest.approx(stats.f_oneway(*groups).pvalue, rel=1e-9)


def test_a_range_is_cut_into_thirds_of_its_sampled_values_lowest_first():
    units = [16, 200, 40, 100, 250, 20]
    rows = [({"units": u}, 0.6 + u / 1000) for u in units]
    (effect,) = importance.effects(trials(rows), [UNITS])
    assert effect.groups == ("16-20", "40-100", "200-250") and effect.counts == (2, 2, 2)
    assert effect.means == pytest.approx((0.618, 0.67, 0.825))
    # a range sampled at 3 values or fewer is grouped by value
    rows = [({"units": u}, 0.6 + u / 1000) for u in (16, 16, 64, 64, 64, 256)]
    (effect,) = importance.effects(trials(rows), [UNITS])
    assert effect.groups == ("16", "64", "256") and effect.counts == (2, 3, 1)


def test_differences_inside_the_noise_are_said_to_be():
    """Two validation images' worth of difference on 133 images is noise: read as such, with the
    cautions printed."""
    rows = [({"layers": (2, 3, 4)[i % 3]}, 0.80 + (2 / 133) * (i % 3 == 2)) for i in range(6)]
    found = importance.effects(trials(rows), [LAYERS], images=133)
    assert found[0].share == pytest.approx(1.0) and found[0].reading == "within noise"
    text = importance.format_effects(found, 6, images=133)
    assert "only 6 trials" in text and "none of them is shown to matter" in text
    # the same shares measured on 100,000 images stand out, and 30 trials are not few
    found = importance.effects(trials(rows * 5), [LAYERS], images=100_000)
    assert found[0].reading == "stands out"
    text = importance.format_effects(found, 30, images=100_000)
    assert "only" not in text and "none of them" not in text


def test_a_share_no_larger_than_chance_reads_as_chance():
    rows = [({"layers": layers}, score) for layers, score in
            [(2, 0.7), (3, 0.9), (4, 0.8), (2, 0.9), (3, 0.7), (4, 0.8), (2, 0.8), (3, 0.8), (4, 0.7), (2, 0.71)]]
    (effect,) = importance.effects(trials(rows), [LAYERS])
    assert effect.share <= effect.chance and effect.reading == "like chance"


def test_failed_trials_fixed_hyperparameters_and_lower_rungs_are_left_out():
    rows = [({"layers": l, "units": 64, "epochs": e}, s) for l, e, s in
            [(2, 1, 0.5), (3, 1, 0.6), (4, 1, 0.7), (2, 1, 0.55), (4, 3, 0.2), (2, 3, 0.9)]]
    found = trials(rows) + [Trial(params={"layers": 3, "units": 64, "epochs": 1}, val_accuracy=float("nan"),
                                  std=float("nan"), fit_seconds=0.0, status="diverged")]
    (effect,) = importance.effects(found, [LAYERS, UNITS], rung="epochs")  # units took one value
    assert effect.counts == (2, 1, 1) and effect.best == "4"  # the first rung's 4 scored trials only
    assert importance.effects(trials(rows[:2]), [LAYERS]) == []  # 2 scores: nothing to say
    assert importance.report(trials(rows[:2]), [LAYERS]) == ""


def test_a_search_prints_the_table_after_its_ranking(data_dir, tmp_path, capsys, scored):
    """The scored trainings score layers/10 + units/1000 (conftest's `scored`): over layers 1-3
    and units 4 or 40, layers take 0.95 of the spread and units 0.05."""
    out = tmp_path / "grid"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2,3", "--units", "4,40",
            "--learning-rate", "0.001", "--batch-size", "16",
            "--image-size", "8", "--epochs", "1"]
    assert tune_grid.main(argv) == 0
    printed = capsys.readouterr().out
    ranked, after = printed.split("which hyperparameters matter (6 trials", 1)
    assert "best vs runner-up" in ranked and "test_accuracy" not in ranked
    rows = [line.split() for line in after.splitlines()[3:5]]
    assert [r[:4] for r in rows] == [["layers", "3", "values", "0.95"], ["units", "2", "values", "0.05"]]
    assert rows[0][6] == "3" and rows[1][6] == "40"  # the best group
    # run again: the finished search shows its stored table, importance included, without training
    assert tune_grid.main(argv) == 0
    again = capsys.readouterr().out
    assert "holds this search, finished" in again and after.splitlines()[3] in again

    # the folder command prints the same table for a finished search, and refuses a folder without one
    assert folders.main([str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"{out}:" and table[4] == after.splitlines()[3]
    assert folders.main([str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("importance: cannot read a search in") and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_random_search_prints_it_too(data_dir, tmp_path, capsys, scored):
    code = tune_random.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "r"), "--n-iter", "4",
                             "--layers", "1:3", "--units", "8:64", "--image-size", "8", "--epochs", "1"])
    assert code == 0
    assert "which hyperparameters matter (4 trials" in capsys.readouterr().out


@pytest.mark.slow
def test_pooling_takes_out_each_searchs_level(data_dir, tmp_path, capsys, scored, monkeypatch):
    """Two grids of one space, the second's scores 0.3 higher (another split, say): pooled, each
    centred on its own mean, layers keep their share as in one search; searches of another space
    are refused."""
    import json

    for name in ("a", "b"):
        assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(tmp_path / name), "--layers", "1,2,3",
                               "--units", "4,40", "--learning-rate", "0.001", "--batch-size", "16",
                               "--image-size", "8", "--epochs", "1"]) == 0
    rows = (tmp_path / "b" / "results.csv").read_text().splitlines()
    header = rows[0].split(",")
    at = header.index("val_accuracy")
    lifted = [rows[0]] + [",".join(f"{float(v) + 0.3}" if i == at else v for i, v in enumerate(r.split(",")))
                          for r in rows[1:]]
    (tmp_path / "b" / "results.csv").write_text("\n".join(lifted) + "\n")
    capsys.readouterr()
    assert folders.main(["--pool", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "2 searches pooled, each centred on its own mean:"
    assert "(12 trials" in printed[1] and printed[4].split()[:4] == ["layers", "3", "values", "0.95"]
    # without centring the 0.3 between the searches would swamp every share
    found = importance.effects(folders.read_search(tmp_path / "a")[0] + folders.read_search(tmp_path / "b")[0],
                               folders.read_search(tmp_path / "a")[1])
    assert found[0].share < 0.5

    manifest = json.loads((tmp_path / "b" / "search.json").read_text())
    manifest["space"]["layers"] = {"choices": [1, 2]}
    (tmp_path / "b" / "search.json").write_text(json.dumps(manifest))
    assert folders.main(["--pool", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "searched different ones" in capsys.readouterr().err


def test_tied_values_stay_in_one_third():
    """Six trials at one learning rate (a Bayesian search re-evaluating a point) and three at
    others: the six are one group, so the rate explains no more than chance."""
    rows = [({"learning_rate": 1e-3}, s) for s in (0.7, 0.7, 0.7, 0.9, 0.9, 0.9)]
    rows += [({"learning_rate": lr}, 0.9) for lr in (2e-3, 3e-3, 4e-3)]
    (effect,) = importance.effects(trials(rows), [LR])
    assert effect.thirds and effect.counts == (6, 3) and effect.groups == ("0.001-0.001", "0.002-0.004")
    assert effect.share == pytest.approx(0.25) and effect.reading == "like chance"


def test_pure_noise_rarely_stands_out():
    """Scores that no hyperparameter sets (seed noise of 0.03 on top of 133 images' noise): the F
    test keeps "stands out" near its 5% level, where share > chance alone passed about half."""
    rng = np.random.default_rng(1)
    hits = total = 0
    for _ in range(200):
        rows = [({"learning_rate": float(10 ** rng.uniform(-4, -1)), "layers": int(rng.integers(2, 5))},
                 float(rng.binomial(133, 0.85) / 133 + rng.normal(0, 0.03))) for _ in range(12)]
        for effect in importance.effects(trials(rows), [LR, LAYERS], images=133):
            total += 1
            hits += effect.reading == "stands out"
    assert total == 400 and hits / total < 0.1


def test_failed_trials_are_counted_in_the_header():
    rows = [({"layers": (2, 3, 4)[i % 3]}, 0.5 + 0.1 * (i % 3)) for i in range(6)]
    failed = Trial(params={"layers": 4}, val_accuracy=float("nan"), std=float("nan"), fit_seconds=0.0,
                   status="diverged")
    text = importance.report(trials(rows) + [failed], [LAYERS], images=133)
    assert text.startswith("which hyperparameters matter (6 trials; 1 without a score left out;")


def test_malformed_folders_end_in_one_line(data_dir, tmp_path, capsys, scored):
    out = tmp_path / "grid"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2,3", "--units", "4",
                           "--learning-rate", "0.001", "--batch-size", "16", "--image-size", "8", "--epochs", "1"]) == 0
    capsys.readouterr()
    assert folders.main(["--pool", str(out), str(out)]) == 2
    assert "a folder twice" in capsys.readouterr().err
    good = (out / "search.json").read_text()
    for name, text in (("search.json", "[1, 2]"), ("search.json", good.replace('"layers"', '"units_x"')),
                       ("best.json", "[]")):
        original = (out / name).read_text()
        (out / name).write_text(text)
        assert folders.main([str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("importance: cannot read a search in"), err
        (out / name).write_text(original)
