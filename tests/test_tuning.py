"""The three searches: space parsing and sampling scale, trial counts, ranking, failures,
coarse-to-fine narrowing, the Bayesian optimizer, and the files each run writes."""

import csv
import dataclasses
import json
import math
import os

import numpy as np
import pytest

import beans_tune.cnn
import beans_tune.hparams
import beans_tune.images
import beans_tune.training
import tune_bayes
import tune_grid
import tune_random
from beans_tune.predict import read_image
from beans_tune.tuning import runner, searches
from beans_tune.tuning.space import build_space, parse_dim
from conftest import instant_train, is_estimate, is_trial, patch_train, split_folders

# The searches tune the BN model by default (test_the_searches_tune_the_bn_model_by_default);
# these tests are about the search machinery, which the cheaper baseline model exercises as well.
TINY = ["--image-size", "8", "--epochs", "1", "--units", "4", "--batch-size", "4", "--decay", "0", "--batch-norm", "false",
        "--augment", "false"]


def results(out):
    with (out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def table_scores(printed, header="rank "):
    """val_acc column of the first ranked table printed."""
    lines = printed[printed.index(header):].splitlines()
    column = lines[0].split().index("val_acc")
    rows = []
    for line in lines[2:]:
        if not line.strip() or not line.split()[0].isdigit():
            break
        rows.append(float(line.split()[column]))
    return rows


# --- sampling scale ------------------------------------------------------------------------

def sample(dim, n=20000):
    dist = dim.scipy()
    return np.asarray(dist.rvs(size=n, random_state=np.random.RandomState(0)))


def test_learning_rate_is_log_uniform():
    lr = sample(parse_dim("learning_rate", "1e-4:1"))
    assert lr.min() >= 1e-4 and lr.max() <= 1
    assert abs((lr < 1e-2).mean() - 0.5) < 0.02  # uniform sampling would put ~1% there
    assert abs((lr < 1e-3).mean() - 0.25) < 0.02


def test_units_are_log_uniform_integers():
    units = sample(parse_dim("units", "16:256"))
    assert units.dtype.kind == "i" and units.min() == 16 and units.max() == 256
    assert abs((units < 64).mean() - 0.5) < 0.03  # 16..64 is half the decades of 16..256


def test_betas_are_sampled_through_one_minus_beta():
    beta = sample(parse_dim("beta_2", "0.9:0.999"))
    assert beta.min() >= 0.9 and beta.max() <= 0.999
    assert abs((beta > 0.99).mean() - 0.5) < 0.02  # 0.99..0.999 as likely as 0.9..0.99


def test_layers_uniform_and_batch_size_powers_of_two():
    layers = sample(parse_dim("layers", "1:4"))
    assert sorted(set(layers)) == [1, 2, 3, 4]
    assert np.allclose(np.bincount(layers)[1:] / len(layers), 0.25, atol=0.02)
    assert parse_dim("batch_size", "16:128").scipy() == [16, 32, 64, 128]


def test_the_middle_of_a_dimension_is_the_median_of_its_sampling():
    # what the time estimate trains: half of the draws fall below it, on the dimension's own scale
    assert parse_dim("learning_rate", "1e-4:1e-2").middle() == pytest.approx(1e-3)
    assert parse_dim("learning_rate", "1e-4:1e-2:linear").middle() == pytest.approx(0.00505)
    assert parse_dim("beta_2", "0.9:0.999").middle() == pytest.approx(1 - math.sqrt(0.1 * 0.001))
    assert parse_dim("units", "16:256").middle() == 64
    assert parse_dim("batch_size", "16:64").middle() == 32
    assert parse_dim("layers", "2,3,4").middle() == 3
    assert parse_dim("batch_size", "64,16,32").middle() == 32  # a list's middle, in order
    for text in ("1e-4:1e-2", "16:256"):
        dim = parse_dim("learning_rate" if "e" in text else "units", text)
        draws = dim.scipy().rvs(size=4000, random_state=np.random.default_rng(0))
        assert np.mean(draws < dim.middle()) == pytest.approx(0.5, abs=0.03)


def test_space_in_skopt_terms():
    lr = parse_dim("learning_rate", "1e-4:1e-1").skopt()
    units = parse_dim("units", "16:256").skopt()
    batch = parse_dim("batch_size", "16:128").skopt()
    bn = parse_dim("batch_norm", "false,true").skopt()
    assert (lr.prior, lr.low, lr.high) == ("log-uniform", 1e-4, 1e-1)
    assert (units.__class__.__name__, units.prior) == ("Integer", "log-uniform")
    assert list(batch.categories) == [16, 32, 64, 128]
    assert list(bn.categories) == [False, True]


# --- parsing and bad flags --------------------------------------------------------------------

@pytest.mark.parametrize("name, text, message", [
    ("learning_rate", "1e-1:1e-5", "low must be below high"),
    ("learning_rate", "0:1e-1", "log-uniform range needs bounds > 0"),
    ("learning_rate", "0,1e-3", "learning_rate must be > 0"),
    ("decay", "0:1", "log-uniform range needs bounds > 0"),
    ("learning_rate", "1e-3,,1e-2", "empty value"),
    ("beta_1", "0.9:1.0", r"1-log range needs 0 <= lo and hi < 1"),
    ("layers", "0,2", "layers must be an integer >= 1"),
    ("batch_size", "33:60", "no power of two"),
    ("optimizer", "adam:sgd", "takes a comma list"),
])
def test_impossible_ranges_are_refused(name, text, message):
    with pytest.raises(beans_tune.hparams.UsageError, match=message):
        parse_dim(name, text)


def test_grid_refuses_ranges():
    with pytest.raises(beans_tune.hparams.UsageError, match="a grid takes a comma list"):
        parse_dim("learning_rate", "1e-4:1e-2", allow_range=False)


def test_single_value_fixes_a_hyperparameter():
    dims, fixed = build_space({"learning_rate": [1e-3, 1e-2], "units": [8, 16]}, {"units": "32"}, False)
    assert [d.name for d in dims] == ["learning_rate"] and fixed == {"units": 32}


def test_cosine_schedule_fixes_decay_at_zero_unless_decay_was_asked_for():
    defaults = {"learning_rate": "1e-3:1e-2", "decay": "1e-3:1e-1"}
    dims, fixed = build_space(defaults, {"schedule": "cosine"}, True)
    assert [d.name for d in dims] == ["learning_rate"] and fixed == {"schedule": "cosine", "decay": 0.0}
    dims, fixed = build_space(defaults, {"schedule": "cosine,inverse-time", "decay": "0"}, True)
    assert [d.name for d in dims] == ["learning_rate", "schedule"] and fixed == {"decay": 0.0}
    dims, fixed = build_space(defaults, {"schedule": "inverse-time"}, True)
    assert [d.name for d in dims] == ["learning_rate", "decay"]
    for asked in ("0.01", "0,0.01", "1e-3:1e-1"):
        with pytest.raises(beans_tune.hparams.UsageError, match="--decay belongs to --schedule inverse-time"):
            build_space(defaults, {"schedule": "inverse-time,cosine", "decay": asked}, True)


@pytest.mark.parametrize("script, argv, message", [
    (tune_random, ["--learning-rate", "1e-1:1e-5"], "--learning-rate: low must be below high"),
    (tune_random, ["--schedule", "cosine", "--decay", "0.03"], "--decay belongs to --schedule inverse-time"),
    (tune_grid, ["--schedule", "step"], "--schedule: schedule must be one of inverse-time, cosine, got 'step'"),
    (tune_grid, ["--final-patience", "-1"], "argument --final-patience: must be in [0, 1000], got -1"),
    (tune_grid, ["--final-data", "all"], "argument --final-data: invalid choice: 'all'"),
    (tune_random, ["--final-data", ""], "argument --final-data: invalid choice: ''"),
    (tune_bayes, ["--final-data", "train+validation", "--final-patience", "5"],
     "--final-patience has nothing to stop on with --final-data train+validation"),
    (tune_random, ["--n-iter", "0"], "argument --n-iter: must be in [1, 10000], got 0"),
    (tune_grid, ["--learning-rate", "1e-4:1e-2"], "a grid takes a comma list"),
    (tune_grid, ["--units", ""], "--units: empty value"),
    (tune_grid, ["--bogus", "3"], "unrecognized arguments: --bogus"),
    (tune_bayes, ["--n-calls", "0"], "argument --n-calls: must be in [1, 10000], got 0"),
    (tune_bayes, ["--decay=-1:1"], "--decay: a log-uniform range needs bounds > 0"),
    (tune_bayes, ["--cv", "3"], "unrecognized arguments: --cv"),
])
def test_bad_flags_one_line_exit_2(data_dir, tmp_path, capsys, script, argv, message):
    out = tmp_path / "run"
    assert script.main(["--data-dir", str(data_dir), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_grid_file_unknown_name_and_empty_list(data_dir, tmp_path, capsys):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"learning_rate": [1e-3], "weight_decay": [0.1]}))
    assert tune_grid.main(["--data-dir", str(data_dir), "--grid", str(grid)]) == 2
    assert "unknown hyperparameter 'weight_decay'" in capsys.readouterr().err
    grid.write_text(json.dumps({"learning_rate": []}))
    assert tune_grid.main(["--data-dir", str(data_dir), "--grid", str(grid)]) == 2
    assert "learning_rate needs a non-empty list" in capsys.readouterr().err
    cosine = "decay belongs to the inverse-time schedule"
    for content, flags, message in [({"schedule": ["cosine"], "decay": [0, 0.01]}, [], cosine),
                                    ({"schedule": ["cosine "], "decay": [0.01]}, [], cosine),
                                    ({"layers": [2, 3], "decay": [0.01, 0.03]}, ["--schedule", "cosine"], cosine),
                                    ({"layers": [2, 3], "decay": [None]}, ["--schedule", "cosine"],
                                     "--decay: expected float, got 'None'")]:
        grid.write_text(json.dumps(content))  # a decay the file asks for never gives way to cosine silently
        assert tune_grid.main(["--data-dir", str(data_dir), "--grid", str(grid), *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (content, err)


@pytest.mark.slow
def test_trials_and_the_final_model_train_with_the_schedule_asked_for(data_dir, tmp_path, monkeypatch):
    seen, fake = [], instant_train(beans_tune.training, [])
    patch_train(monkeypatch, lambda hp, *a, **k: seen.append((hp.schedule, hp.decay)) or fake(hp, *a, **k))
    assert tune_random.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--n-iter", "2",
                             "--schedule", "cosine", "--image-size", "8", "--epochs", "1", "--units", "4",
                             "--batch-size", "4"]) == 0
    assert seen == [("cosine", 0.0)] * 3  # two trials, then the final model; the default decay range gave way


# --- coarse to fine ---------------------------------------------------------------------------

def test_narrowing_spans_the_top_trials_in_log_space():
    dim = parse_dim("learning_rate", "1e-4:1")
    narrow = dim.narrowed([1e-3, 1e-2])
    assert narrow.low == pytest.approx(10 ** -3.1) and narrow.high == pytest.approx(10 ** -1.9)
    beta = parse_dim("beta_1", "0.5:0.999").narrowed([0.9, 0.99])
    assert beta.low == pytest.approx(1 - 10 ** -0.9) and beta.high == pytest.approx(1 - 10 ** -2.1)
    layers = parse_dim("layers", "1:6").narrowed([2, 3])
    assert (layers.low, layers.high) == (1, 4)
    assert parse_dim("batch_size", "16:256").narrowed([32, 64]).scipy() == [32, 64]
    clipped = dim.narrowed([1e-4, 2e-4])
    assert clipped.low == 1e-4  # never beyond the original range


def test_refine_runs_rounds_over_narrowed_ranges(data_dir, tmp_path, capsys, scored):
    out = tmp_path / "run"
    code = tune_random.main(["--data-dir", str(data_dir), "--out", str(out), "--n-iter", "4", "--refine", "1",
                             "--learning-rate", "1e-4:1e-1", "--layers", "1:4", *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    rows = results(out)
    assert len(rows) == 8
    assert "round 1/2: best of 4" in printed and "round 2/2: best of 4" in printed
    # the scored trainings rank by layers; --keep 0.3 of 4 keeps the top 2 (ties: the first trained)
    first = sorted(rows[:4], key=lambda r: -float(r["val_accuracy"]))
    top, bottom = first[:2], first[2:]
    lr = parse_dim("learning_rate", "1e-4:1e-1")
    expected = lr.narrowed([float(r["learning_rate"]) for r in top])
    assert expected.describe() != lr.narrowed([float(r["learning_rate"]) for r in bottom]).describe()
    layers = parse_dim("layers", "1:4").narrowed([int(r["layers"]) for r in top])
    assert (f"round 2/2 ranges: learning_rate {expected.describe()}  layers {layers.describe()}"
            in printed)
    second = rows[4:]
    assert all(expected.low <= float(r["learning_rate"]) <= expected.high for r in second)
    assert all(layers.low <= int(r["layers"]) <= layers.high for r in second)


# --- grid end to end ------------------------------------------------------------------------

@pytest.mark.slow
def test_two_by_two_grid_runs_four_trials_ranked(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = tune_grid.main(["--data-dir", str(data_dir), "--out", str(out),
                           "--learning-rate", "1e-3,1e-2", "--layers", "1,2", *TINY])
    assert code == 0
    rows = results(out)
    assert len(rows) == 4
    assert {(r["learning_rate"], r["layers"]) for r in rows} == {
        ("0.001", "1"), ("0.001", "2"), ("0.01", "1"), ("0.01", "2")}
    printed = capsys.readouterr().out
    assert "trial 4/4  " in printed and " ETA " in printed and " best " in printed
    scores = table_scores(printed)
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    best = json.loads((out / "best.json").read_text())
    assert best["val_accuracy"] == pytest.approx(max(float(r["val_accuracy"]) for r in rows), abs=1e-6)
    assert best["trials"] == best["trainings"] == 4
    import keras  # the saved model takes the raw test files and scores them as the search did

    test = beans_tune.images.Beans(data_dir, image_size=8).test
    saved = keras.models.load_model(out / "model.keras")
    raw = [read_image(f) for f in test.files]
    assert {image.shape for image in raw} == {(12, 12, 3)}  # the files' own size, values 0-255
    on_raw = saved.predict(np.stack(raw), verbose=0)
    on_decoded = saved.layers[-1].predict(test.x, verbose=0)  # the trained network on images.py's arrays
    np.testing.assert_allclose(on_raw, on_decoded, atol=1e-5)
    assert best["test_accuracy"] == pytest.approx(float(np.mean(on_decoded.argmax(1) == test.y)), abs=1e-6)
    assert best["classes"] == list(test.classes)
    assert best["test_images"] == len(test.y)
    assert {p.name for p in out.iterdir()} == {".lock", "search.json", "results.csv", "histories.jsonl", "best.json", "model.keras",
                                              "val_accuracy.png"}


@pytest.mark.parametrize("flags, searched, fixed", [
    ([], None, True),                                # the course project: tune the BN model
    (["--batch-norm", "false"], None, False),        # the baseline, when asked
    (["--batch-norm", "false,true"], ["False", "True"], None),  # both, as a searched choice
])
@pytest.mark.slow
def test_the_searches_tune_the_bn_model_by_default(data_dir, tmp_path, flags, searched, fixed):
    out = tmp_path / "run"
    at = TINY.index("--batch-norm")
    no_bn = TINY[:at] + TINY[at + 2:]
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1", "--learning-rate",
                           "1e-3,1e-2", *no_bn, *flags]) == 0
    manifest = json.loads((out / "search.json").read_text())
    rows = results(out)
    if searched:
        assert sorted({r["batch_norm"] for r in rows}) == searched and len(rows) == 4
    else:
        assert manifest["fixed"].get("batch_norm", False) is fixed and "batch_norm" not in rows[0]
    best = json.loads((out / "best.json").read_text())
    assert best["hparams"]["batch_norm"] is (fixed if fixed is not None else best["params"]["batch_norm"])


@pytest.mark.slow
def test_failed_trial_is_recorded_and_sorted_last(data_dir, tmp_path, capsys, monkeypatch):
    import keras
    real = beans_tune.cnn.build_model

    def diverge_at_high_lr(hp, image_size=64, **kw):
        model = real(hp, image_size, **kw)
        if hp.learning_rate < 5e-3:
            return model
        return keras.Model(model.input, keras.layers.Lambda(lambda t: t * float("nan"))(model.output))

    monkeypatch.setattr(beans_tune.cnn, "build_model", diverge_at_high_lr)
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out),
                           "--learning-rate", "1e-3,1e-2", "--layers", "1", *TINY]) == 0
    rows = {r["learning_rate"]: r for r in results(out)}
    assert rows["0.01"]["status"] == "diverged" and "NaN" in rows["0.01"]["message"]
    assert rows["0.01"]["val_accuracy"] == "nan" and rows["0.001"]["status"] == "ok"
    table = capsys.readouterr().out.split("rank ")[1].splitlines()
    assert table[2].split()[1] == "0.001" and "diverged" in table[3]
    assert json.loads((out / "best.json").read_text())["params"]["learning_rate"] == 0.001


@pytest.mark.slow
def test_search_never_sees_the_test_split(data_dir, tmp_path, monkeypatch):
    seen, order = [], []
    real_train, real_split = beans_tune.training.train, beans_tune.images.Beans.split

    def spy_trial(hp, train, val, *args, **kw):
        seen.append((train.x.copy(), val.x.copy() if val is not None else np.zeros((0, *train.x.shape[1:]))))
        order.append("trial")
        return real_train(hp, train, val, *args, **kw)

    def spy_split(self, name):
        order.append(name)
        return real_split(self, name)

    patch_train(monkeypatch, spy_trial)
    monkeypatch.setattr(beans_tune.images.Beans, "split", spy_split)
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2",
                           "--learning-rate", "1e-3", *TINY]) == 0
    assert order.index("test") > max(i for i, o in enumerate(order) if o == "trial")
    test = beans_tune.images.Beans(data_dir, image_size=8).test.x.reshape(12, -1)
    assert len(seen) == 3  # two trials and the final model
    for train_x, val_x in seen:
        images = np.concatenate([train_x, val_x]).reshape(len(train_x) + len(val_x), -1)
        assert len(images) == 24, "train and validation: as two splits (trials) or one (the final model)"
        assert not any((np.abs(images - t).max(axis=1) == 0).any() for t in test)


@pytest.mark.slow
def test_grid_with_two_processes(data_dir, tmp_path):
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--n-jobs", "2",
                           "--layers", "1,2", "--learning-rate", "1e-3", *TINY]) == 0
    assert sorted(r["layers"] for r in results(out)) == ["1", "2"]
    # trained in worker processes, not in this one
    assert all(r["worker"].split(":")[1] != str(os.getpid()) for r in results(out))


@pytest.mark.slow
def test_cv_runs_k_fits_per_configuration(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--cv", "2",
                           "--layers", "1,2", "--learning-rate", "1e-3", *TINY]) == 0
    assert len(results(out)) == 4
    assert " std " in capsys.readouterr().out


def test_existing_results_are_not_overwritten(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.csv").write_text("trial\n1\n")
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", *TINY]) == 2
    assert "holds results of an unknown search" in capsys.readouterr().err
    assert (out / "results.csv").read_text() == "trial\n1\n"


# --- Bayesian optimization ------------------------------------------------------------------

def bowl(point):  # optimum at lr = 1e-2, layers = 3
    lr, layers = point
    return (math.log10(lr) + 2) ** 2 + 0.5 * (layers - 3) ** 2


@pytest.mark.slow
def test_expected_improvement_finds_a_known_optimum():
    from skopt.space import Integer, Real

    space = [Real(1e-4, 1, prior="log-uniform"), Integer(1, 6)]
    optimizer = searches.gp_optimizer(space, n_initial_points=6, seed=0)
    result = searches.ask_tell(optimizer, lambda points: [bowl(p) for p in points], n_calls=20)
    assert len(result.x_iters) == 20
    assert abs(math.log10(result.x[0]) + 2) < 0.5 and result.x[1] == 3


@pytest.mark.slow
def test_one_point_per_step_is_exactly_gp_minimize():
    from skopt import gp_minimize
    from skopt.space import Integer, Real

    space = [Real(1e-4, 1, prior="log-uniform"), Integer(1, 6)]
    reference = gp_minimize(bowl, space, acq_func="EI", n_calls=10, n_initial_points=4, random_state=3)
    optimizer = searches.gp_optimizer(space, n_initial_points=4, seed=3)
    ours = searches.ask_tell(optimizer, lambda points: [bowl(p) for p in points], n_calls=10)
    assert ours.x_iters == reference.x_iters and list(ours.func_vals) == list(reference.func_vals)


@pytest.mark.slow
def test_parallel_steps_ask_two_distinct_points():
    from skopt.space import Integer, Real

    space = [Real(1e-4, 1, prior="log-uniform"), Integer(1, 6)]
    batches = []

    def evaluate(points):
        batches.append(points)
        return [bowl(p) for p in points]

    result = searches.ask_tell(searches.gp_optimizer(space, 4, seed=0), evaluate, n_calls=10, n_points=2)
    assert [len(b) for b in batches] == [2] * 5
    assert all(b[0] != b[1] for b in batches)
    assert len(result.x_iters) == 10


@pytest.mark.slow
def test_bayes_end_to_end_writes_every_file(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert tune_bayes.main(["--data-dir", str(data_dir), "--out", str(out), "--n-calls", "3",
                            "--n-initial-points", "2", "--layers", "1:2", "--learning-rate", "1e-4:1e-1",
                            *TINY]) == 0
    assert len(results(out)) == 3
    assert {p.name for p in out.iterdir()} == {".lock", "search.json", "results.csv", "histories.jsonl", "best.json", "model.keras",
                                              "val_accuracy.png", "convergence.png", "objective.png"}
    assert "trial 3/3" in capsys.readouterr().out


@pytest.mark.slow
def test_bayes_penalises_a_nan_trial_and_finishes(data_dir, tmp_path, monkeypatch):
    import keras
    real, calls = beans_tune.cnn.build_model, []

    def first_diverges(hp, image_size=64, **kw):
        calls.append(hp)
        model = real(hp, image_size, **kw)
        if len(calls) != 2:  # the first model built is the time estimate's, the second the first trial's
            return model
        return keras.Model(model.input, keras.layers.Lambda(lambda t: t * float("nan"))(model.output))

    monkeypatch.setattr(beans_tune.cnn, "build_model", first_diverges)
    told = []
    real_ask_tell = searches.ask_tell

    def spy_ask_tell(optimizer, evaluate, *args, **kw):
        def wrapped(points):
            told.extend(evaluate(points))
            return told[-len(points):]
        return real_ask_tell(optimizer, wrapped, *args, **kw)

    monkeypatch.setattr(searches, "ask_tell", spy_ask_tell)
    out = tmp_path / "run"
    assert tune_bayes.main(["--data-dir", str(data_dir), "--out", str(out), "--n-calls", "3",
                            "--n-initial-points", "2", "--layers", "1:2", "--learning-rate", "1e-4:1e-1",
                            *TINY]) == 0
    rows = results(out)
    assert rows[0]["status"] == "diverged" and "NaN" in rows[0]["message"]
    assert told[0] == 1.0 and all(math.isfinite(v) for v in told)  # accuracy 0, never NaN
    assert (out / "best.json").exists()


@pytest.mark.slow
def test_estimator_follows_scikit_learn_conventions(data_dir, tmp_path, monkeypatch):
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import GridSearchCV
    from sklearn.utils.estimator_checks import check_get_params_invariance, check_no_attributes_set_in_init

    monkeypatch.chdir(tmp_path)
    beans = beans_tune.images.Beans(data_dir, image_size=8)
    est = runner.BeansClassifier(units=4, epochs=2, layers=1, batch_size=4)
    assert sorted(est.get_params()) == sorted([*beans_tune.hparams.HPARAM_NAMES, "seed"])
    assert est.get_params()["learning_rate"] is None  # stored unchanged: HParams gives the default
    check_no_attributes_set_in_init("BeansClassifier", est)
    check_get_params_invariance("BeansClassifier", est)
    with pytest.raises(TypeError, match="unexpected parameters"):
        runner.BeansClassifier(unit=4)
    twin = clone(est).set_params(units=8)
    assert (twin.units, twin.layers, est.units) == (8, 1, 4)
    assert twin.hparams() == beans_tune.hparams.HParams(units=8, epochs=2, layers=1, batch_size=4)
    val = runner.Holdout(beans.validation.x, beans.validation.y)
    est.fit(beans.train.x, beans.train.y, validation=val)
    assert est.score(val.x, val.y) == pytest.approx(accuracy_score(val.y, est.predict(val.x)), abs=1e-6)
    # as the lecture uses it: in scikit-learn's own GridSearchCV, which writes nothing anywhere
    x, y = np.concatenate([beans.train.x, beans.validation.x]), np.concatenate([beans.train.y, beans.validation.y])
    search = GridSearchCV(runner.BeansClassifier(units=4, epochs=1, batch_size=4, batch_norm=False, augment=False),
                          {"layers": [1, 2]}, cv=2, refit=False).fit(x, y)
    assert [p["layers"] for p in search.cv_results_["params"]] == [1, 2]
    assert all(0 <= s <= 1 for s in search.cv_results_["mean_test_score"])
    assert list(tmp_path.iterdir()) == [tmp_path / "beans"]


@pytest.mark.slow
def test_final_data_train_and_validation_trains_on_both_for_all_epochs(data_dir, tmp_path, monkeypatch, capsys):
    """The trials train on train and score on validation as without the flag; only the final
    model also trains on the validation images, all its epochs (no early stopping, the last epoch
    kept), and claims no validation score."""
    calls, fake = [], instant_train(beans_tune.training, [])

    def spy(hp, train_split, val_split, **kwargs):
        calls.append((hp.epochs, hp.patience, len(train_split), val_split, kwargs.get("keep_best", True)))
        return fake(hp, train_split, val_split, **kwargs)

    patch_train(monkeypatch, spy)
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", "--learning-rate", "1e-3", *TINY,
            "--final-epochs", "5", "--final-data", " Train+Validation"]
    assert tune_grid.main(argv) == 0
    printed = capsys.readouterr().out
    (_, _, n_train, val, _), (_, _, n_train2, val2, _) = calls[:2]  # the trials: train split, scored on validation
    assert n_train == n_train2 == 12 and len(val) == len(val2) == 12
    assert calls[2] == (5, 5, 24, None, False)  # train + validation, all 5 epochs, the last kept
    best = json.loads((out / "best.json").read_text())
    assert best["final_data"] == "train+validation" and best["final_val_accuracy"] is None
    assert best["hparams"]["epochs"] == 5 and best["final_epochs"] == 5
    assert "retraining on the train and validation splits (24 images) for all 5 epochs" in printed
    assert "trained on it" in printed[printed.index("val_accuracy (final)"):]
    assert tune_grid.main([*argv[:-1], "train", "--final-patience", "3"]) == 0  # finished: not trained again
    assert len(calls) == 3
    assert capsys.readouterr().err.strip().splitlines() == [
        "tune_grid.py: note: --final-patience 3 not applied: the finished search's model trained on "
        "train+validation, all its epochs",
        "tune_grid.py: note: --final-data train not applied: the finished search's model trained on "
        "train+validation"]
    assert tune_grid.main([*argv, "--final-epochs", "9"]) == 0 and len(calls) == 3
    assert capsys.readouterr().err.strip() == ("tune_grid.py: note: --final-epochs 9 not applied: the finished "
                                               "search's model trained all 5 epochs")


@pytest.mark.parametrize("schedule, final_data", [("cosine", "train+validation"), ("inverse-time", "train")])
@pytest.mark.slow
def test_by_default_the_final_model_of_a_cosine_schedule_learns_from_validation_too(
        data_dir, tmp_path, monkeypatch, schedule, final_data):
    calls, fake = [], instant_train(beans_tune.training, [])
    patch_train(monkeypatch, lambda hp, t, v, **k: calls.append((len(t), v is None)) or fake(hp, t, v, **k))
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2",
                           "--learning-rate", "1e-3", *TINY, "--schedule", schedule]) == 0
    on_both = final_data == "train+validation"
    assert calls == [(12, False)] * 2 + [(24, True) if on_both else (12, False)]
    best = json.loads((out / "best.json").read_text())
    assert best["final_data"] == final_data
    assert best["final_val_accuracy"] is None if on_both else best["final_val_accuracy"] == pytest.approx(0.2041)


@pytest.mark.parametrize("final_data", ["train", "train+validation"])
@pytest.mark.slow
def test_a_final_model_that_diverged_says_so(data_dir, tmp_path, monkeypatch, capsys, final_data):
    fake = instant_train(beans_tune.training, [])

    def train(hp, *args, **kwargs):
        result = fake(hp, *args, **kwargs)
        return result if is_trial(kwargs) else dataclasses.replace(result, status="nan", val_accuracy=float("nan"))

    patch_train(monkeypatch, train)
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", "--learning-rate",
                           "1e-3", *TINY, "--final-data", final_data]) == 0
    captured = capsys.readouterr()
    assert "tune_grid.py: warning: the final model's training ended as 'nan' after 1 epoch" in captured.err
    best = json.loads((out / "best.json").read_text())
    assert best["final_status"] == "nan" and best["final_val_accuracy"] is None  # strict JSON: no NaN
    table = captured.out[captured.out.index("val_accuracy (final)"):]
    assert table.splitlines()[2].split()[2] == "nan"


def test_epoch_counts_are_said_in_words():
    from beans_tune import outputs
    assert [outputs.epoch_count(n) for n in (1, 2, 40)] == ["1 epoch", "2 epochs", "40 epochs"]
    assert [outputs.count(n, "seed") for n in (1, 3)] == ["1 seed", "3 seeds"]


@pytest.fixture
def curves(monkeypatch):
    """Instant trainings whose validation curves differ in shape: layers 1 peaks once at 0.9 and
    ends at 0.5; layers 2 never passes 0.8 and ends there. Only the final model really trains."""
    real = beans_tune.training.train

    def train(hp, *args, **kwargs):
        if not is_trial(kwargs):
            return real(dataclasses.replace(hp, epochs=1), *args, **kwargs)
        curve = [0.3, 0.9, 0.5, 0.5, 0.5, 0.5, 0.5] if hp.layers == 1 else [0.3, 0.6, 0.8, 0.8, 0.8, 0.8, 0.8]
        return beans_tune.training.TrainResult(None, {"val_accuracy": curve}, max(curve), len(curve), 0.0)

    patch_train(monkeypatch, train)


def test_a_trial_is_scored_by_its_best_epoch(data_dir, tmp_path, curves):
    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2", "--learning-rate",
                           "1e-3", *TINY]) == 0
    best = json.loads((out / "best.json").read_text())
    assert best["params"]["layers"] == 1 and best["val_accuracy"] == pytest.approx(0.9)


@pytest.mark.slow
def test_the_default_searches_train_the_augmented_bn_model_on_a_cosine_schedule(data_dir, tmp_path, scored):
    from beans_tune.tuning.space import TRIAL_DEFAULTS

    out = tmp_path / "run"
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--image-size", "8"]) == 0
    manifest = json.loads((out / "search.json").read_text())
    assert manifest["space"] == {"learning_rate": {"choices": [1e-3, 3e-3]}, "layers": {"choices": [3, 4]},
                                 "batch_size": {"choices": [16, 32]}}
    assert {k: manifest["fixed"][k] for k in TRIAL_DEFAULTS} == TRIAL_DEFAULTS == {
        "batch_norm": True, "augment": True, "schedule": "cosine", "bn_momentum": 0.9, "epochs": 20, "patience": 20}
    assert len(results(out)) == 8 and scored[:8] == [20] * 8 and scored[8] == 60
    assert json.loads((out / "best.json").read_text())["final_data"] == "train+validation"


@pytest.mark.parametrize("method", ["Random", "Bayes"])
def test_random_and_bayes_search_the_lectures_five_by_default_with_a_decay_that_acts(method):
    """Learning rate, layers, units, decay and batch size, the rate and the decay on a log scale,
    on the inverse-time schedule (lr / (1 + decay * epoch)), so every trial's decay acts."""
    from beans_tune.tuning.run import prepare

    setup = prepare([], getattr(beans_tune.tuning.methods, method)())
    dims = {d.name: d for d in setup.dims}
    assert set(dims) == {"learning_rate", "layers", "units", "decay", "batch_size"}
    assert dims["learning_rate"].scale == dims["decay"].scale == "log"
    assert dims["decay"].low > 0 and setup.base.schedule == "inverse-time"


def test_a_grid_file_with_the_cosine_schedule_runs_trials_to_their_end_as_the_flag_does(tmp_path):
    """--epochs 40 with cosine: the trials' patience is 40 whether the schedule comes from the
    default, a flag or a grid file (a list there)."""
    from beans_tune.tuning.run import prepare

    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"schedule": ["cosine"], "layers": [1, 2]}))
    for extra in ([], ["--schedule", "cosine"], ["--grid", str(grid)]):
        setup = prepare(["--layers", "1,2", "--epochs", "40", *extra], beans_tune.tuning.methods.Grid())
        assert (setup.base.epochs, setup.base.patience) == (40, 40), extra


def trials_learning_rates(monkeypatch):
    """Instant trainings; returns the list of learning rates the trials train with, as they run."""
    trained, instant = [], instant_train(beans_tune.training, [])

    def spy(hp, *args, **kwargs):
        if is_trial(kwargs):
            trained.append(hp.learning_rate)
        return instant(hp, *args, **kwargs)

    patch_train(monkeypatch, spy)
    return trained


@pytest.mark.parametrize("seed", [0, 1])
def test_the_learning_rates_a_random_search_trains_are_log_uniform(data_dir, tmp_path, monkeypatch, seed):
    from scipy import stats

    trained = trials_learning_rates(monkeypatch)
    low, high = 1e-4, 1e-1
    assert tune_random.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--n-iter", "200",
                             "--seed", str(seed), "--learning-rate", f"{low}:{high}", "--layers", "1",
                             "--final-epochs", "1", *TINY]) == 0
    assert len(trained) == 200 and min(trained) >= low and max(trained) <= high
    # log10 of a log-uniform draw is uniform over [-4, -1]; a linear draw would put 90% above 1e-2
    log_law = stats.uniform(math.log10(low), math.log10(high) - math.log10(low)).cdf
    assert stats.kstest(np.log10(trained), log_law).pvalue > 1e-3
    assert stats.kstest(trained, stats.uniform(low, high - low).cdf).pvalue < 1e-6


@pytest.mark.parametrize("seed", [0, 1])
def test_a_range_with_linear_is_sampled_uniformly(data_dir, tmp_path, monkeypatch, capsys, seed):
    """--learning-rate lo:hi:linear: the lecture's counter-example, uniform draws (most of them in
    the top decade), said so before the search starts."""
    from scipy import stats

    trained = trials_learning_rates(monkeypatch)
    low, high = 1e-4, 1e-1
    assert tune_random.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--n-iter", "200",
                             "--seed", str(seed), "--learning-rate", f"{low}:{high}:linear", "--layers", "1",
                             "--final-epochs", "1", *TINY]) == 0
    assert "search learning_rate 0.0001:0.1 uniform" in " ".join(capsys.readouterr().out.split())
    assert len(trained) == 200 and min(trained) >= low and max(trained) <= high
    assert stats.kstest(trained, stats.uniform(low, high - low).cdf).pvalue > 1e-3
    log_law = stats.uniform(math.log10(low), math.log10(high) - math.log10(low)).cdf
    assert stats.kstest(np.log10(trained), log_law).pvalue < 1e-6


def test_a_range_names_its_scale_in_help_and_refuses_an_unknown_one(capsys):
    assert tune_random.main(["--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "--learning-rate SPEC default: 3e-4:1e-2; range (0, 10]; a range is sampled log-uniform" in shown
    assert "--batch-size SPEC default: 16:64; range [1, 1024]; a range is sampled over powers of two" in shown
    assert "--beta-1 SPEC default: 0.9; range [0, 1); a range is sampled 1-x log-uniform" in shown
    assert "--decay SPEC default: 1e-3:1e-1; 0 with --schedule cosine;" in shown
    assert tune_bayes.main(["--help"]) == 0  # skopt has no 1 - x prior: Bayesian search says what it samples
    assert "--beta-1 SPEC default: 0.9; range [0, 1); a range is sampled uniform (skopt has no 1-x prior)" in " ".join(
        capsys.readouterr().out.split())
    for spec, message in (("1e-4:1e-1:cubic", "unknown scale 'cubic'"), ("1e-4:1e-1:pow2", "pow2 is for integer hyperparameters"),
                          ("0:1e-1:log", "a log-uniform range needs bounds > 0")):
        assert tune_random.main(["--learning-rate", spec]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("script, shown", [(tune_random, "0.9:0.99 1-x log-uniform"),
                                           (tune_bayes, "0.9:0.99 uniform (skopt has no 1-x prior)")])
def test_the_search_prints_each_dimension_as_its_method_samples_it(data_dir, tmp_path, capsys, scored, script,
                                                                     shown):
    assert script.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--beta-1", "0.9:0.99",
                        "--layers", "1", "--final-epochs", "1", *TINY,
                        *(["--n-iter", "2"] if script is tune_random else ["--n-calls", "2", "--n-initial-points", "2"])]) == 0
    assert f"search beta_1 {shown}" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("script, flags", [(tune_grid, ["--learning-rate", "1e-3,1e-2"]),
                                           (tune_random, ["--n-iter", "2"]),
                                           (tune_bayes, ["--n-calls", "3", "--n-initial-points", "2"])])
@pytest.mark.slow
def test_a_searchs_final_model_alone_reads_the_test_split_once(data_dir, tmp_path, monkeypatch, script, flags):
    finals, evaluated, instant = [], [], instant_train(beans_tune.training, [])
    real_evaluate = beans_tune.training.evaluate

    def spy_train(hp, *args, **kwargs):
        result = instant(hp, *args, **kwargs)
        if not is_trial(kwargs):
            finals.append(result.model)
        return result

    def spy_evaluate(model, split, *args, **kwargs):
        evaluated.append((id(model), split_folders(split)))
        return real_evaluate(model, split, *args, **kwargs)

    patch_train(monkeypatch, spy_train)
    monkeypatch.setattr(beans_tune.training, "evaluate", spy_evaluate)
    assert script.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--layers", "1",
                        "--final-epochs", "1", *flags, *TINY]) == 0
    assert len(finals) == 1 and evaluated == [(id(finals[0]), ["test"])]


def test_a_refined_rounds_learning_rates_are_log_uniform_over_its_narrowed_range(data_dir, tmp_path, monkeypatch,
                                                                                 capsys):
    import re

    from scipy import stats

    trained = trials_learning_rates(monkeypatch)
    assert tune_random.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--n-iter", "150",
                             "--refine", "1", "--learning-rate", "1e-5:1e-1", "--layers", "1", "--final-epochs", "1",
                             *TINY]) == 0
    low, high = map(float, re.search(r"round 2/2 ranges: .*learning_rate (\S+):(\S+) log-uniform",
                                     capsys.readouterr().out).groups())
    second = np.array(trained[150:])
    assert len(second) == 150 and high / low > 100  # a range of decades, where the two laws differ
    assert stats.kstest(np.log10(second), stats.uniform(math.log10(low), math.log10(high / low)).cdf).pvalue > 1e-3
    assert stats.kstest(second, stats.uniform(low, high - low).cdf).pvalue < 1e-6


@pytest.mark.parametrize("final_data, trains_on, stops_on", [("train", ["train"], ["validation"]),
                                                            ("train+validation", ["train", "validation"], [])])
def test_the_final_model_trains_and_stops_on_no_test_image(data_dir, tmp_path, monkeypatch, final_data, trains_on,
                                                           stops_on):
    finals, timed, instant = [], [], instant_train(beans_tune.training, [])

    def spy_train(hp, train, val, *args, **kwargs):
        if is_estimate(kwargs):
            timed.append(split_folders(train) + split_folders(val))
        elif not is_trial(kwargs):
            finals.append((split_folders(train), split_folders(val)))
        return instant(hp, train, val, *args, **kwargs)

    monkeypatch.setattr(beans_tune.training, "train", spy_train)
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--layers", "1",
                           "--learning-rate", "1e-3,1e-2", "--final-epochs", "1", "--final-data", final_data,
                           *TINY]) == 0
    assert finals == [(trains_on, stops_on)]
    assert timed == [["train", "validation"]]  # the time estimate too trains on no test image


@pytest.mark.slow
def test_a_search_states_its_trainings_epochs_and_time_first_and_the_timing_changes_no_score(
        data_dir, tmp_path, capsys, monkeypatch):
    import beans_tune.tuning.run

    argv = ["--data-dir", str(data_dir), "--learning-rate", "1e-3,1e-2", "--layers", "1,2", *TINY]
    assert tune_grid.main([*argv, "--epochs", "2", "--out", str(tmp_path / "timed")]) == 0
    printed = capsys.readouterr().out
    estimate = next(line for line in printed.splitlines() if line.startswith("estimate: "))
    assert estimate.startswith("estimate: 4 trainings of 8 epochs in all, then the final model's 2: about ")
    assert printed.index("estimate: ") < printed.index("trial 1/4")
    monkeypatch.setattr(beans_tune.tuning.run, "show_estimate", lambda *args: None)
    assert tune_grid.main([*argv, "--epochs", "2", "--out", str(tmp_path / "untimed")]) == 0
    scores = lambda name: [(r["learning_rate"], r["layers"], r["val_accuracy"]) for r in results(tmp_path / name)]  # noqa: E731
    assert scores("timed") == scores("untimed")  # each training seeds itself: the timing draws nothing from it


def test_the_epochs_a_search_counts_are_those_its_trainings_run(data_dir, tmp_path, scored):
    from beans_tune.tuning.methods import Grid, Random
    from beans_tune.tuning.run import prepare

    one = ["--learning-rate", "1e-3", "--batch-size", "32"]
    assert prepare(["--layers", "1,2", "--epochs", "5", *one], Grid()).epochs == 2 * 5
    assert prepare(["--layers", "1,2", "--epochs", "1,2,100", *one], Grid()).epochs == 2 * (1 + 2 + 100)  # each twice
    assert prepare(["--n-iter", "4", "--epochs", "10:30"], Random()).epochs == 4 * 20  # a range: its middle
    # searched epochs and patience reach the time estimate as the trials' own (it trains 2 epochs)
    for script, searched in ((tune_grid, ["--epochs", "1,2"]), (tune_random, ["--patience", "1:3", "--n-iter", "2"])):
        out = tmp_path / script.__name__
        assert script.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1", "--learning-rate",
                            "1e-3,1e-2", *TINY, *searched]) == 0
