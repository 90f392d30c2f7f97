"""experiments/bn_*.py: the BN study's bookkeeping on instant trainings with known curves (its
figures on the real data are measured by running it, not here)."""

import json

import pytest

import beans_tune.cnn
import beans_tune.hparams
import beans_tune.images
import beans_tune.training
from beans_tune.tuning.outfolder import LOCK
from conftest import is_trial, load_experiment, patch_train


shared = load_experiment("shared")
study = load_experiment("bn_learning_rate")


def test_the_widest_interval_is_the_longest_run_of_rates_reaching_the_threshold():
    rates = [1e-4, 1e-3, 1e-2, 1e-1, 1]
    assert study.widest_interval(rates, [0.9, 0.5, 0.85, 0.9, 0.81], 0.8) == (1e-2, 1)
    assert study.widest_interval(rates, [0.9, 0.9, 0.5, 0.9, 0.5], 0.8) == (1e-4, 1e-3)
    assert study.widest_interval(rates, [0.1] * 5, 0.8) is None


@pytest.fixture
def known_curves(monkeypatch):
    """Instant trainings: BN reaches 0.9 at epoch 2 for rates up to 0.1; the baseline reaches
    0.9 at epoch 3 at 1e-3 only and diverges at 1; seed 1 scores 0.02 lower everywhere."""
    real = beans_tune.training.train

    def train(hp, *args, seed=0, **kwargs):
        if not is_trial(kwargs):  # the grid search's final model
            return real(hp.__class__(**{**hp.to_dict(), "epochs": 1}), *args, seed=seed, **kwargs)
        if not hp.batch_norm and hp.learning_rate >= 1:
            return beans_tune.training.TrainResult(None, {"val_accuracy": [0.3], "loss": [float("nan")]},
                                                   float("nan"), 1, 0.0, status="nan")
        good = hp.learning_rate <= 0.1 if hp.batch_norm else hp.learning_rate == 1e-3
        top = (0.9 if good else 0.5) - seed * 0.02
        reach = 2 if hp.batch_norm else 3
        curve = [0.4 + (top - 0.4) * min(epoch, reach) / reach for epoch in range(1, hp.epochs + 1)]
        return beans_tune.training.TrainResult(None, {"val_accuracy": curve, "loss": [1.0] * hp.epochs}, max(curve),
                                               hp.epochs, 0.0)

    patch_train(monkeypatch, train)


def test_the_learning_rate_study_reports_intervals_and_epochs_to_the_threshold(data_dir, tmp_path, known_curves,
                                                                                 capsys):
    out = tmp_path / "study"
    assert study.main(["--data-dir", str(data_dir), "--image-size", "8", "--epochs", "4", "--seeds", "2",
                       "--rates", "1e-3,1e-2,1e-1,1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "baseline: mean >= 0.8 for learning rates 0.001 to 0.001 (1x); best rate 0.001: first reached 0.8 " \
           "at epoch 3 (median; seeds: 3, 3)" in printed
    assert "bn      : mean >= 0.8 for learning rates 0.001 to 0.1 (100x); best rate 0.001: first reached 0.8 " \
           "at epoch 2 (median; seeds: 2, 2)" in printed
    lines = {line.split()[0]: line.split()[1:] for line in printed.splitlines() if line[:1].isdigit()}
    assert lines["1"] == ["0.000", "[0.000,", "0.000]", "0.490", "[0.480,", "0.500]"]  # diverged: counted as 0
    assert lines["0.001"] == ["0.890", "[0.880,", "0.900]", "0.890", "[0.880,", "0.900]"]
    assert "failed" not in printed
    saved = json.loads((out / "study.json").read_text())
    assert saved["models"]["bn"]["interval"] == [0.001, 0.1]
    assert (out / "convergence.png").stat().st_size > 0 and (out / "grid" / "val_accuracy.png").exists()


inference = load_experiment("bn_inference")


def test_batch_statistics_leave_the_moving_averages_as_they_were(data_dir):
    import numpy as np

    beans = beans_tune.images.Beans(data_dir, image_size=8)
    hp = beans_tune.hparams.HParams(batch_norm=True, layers=1, units=4, epochs=1, batch_size=4)
    model = beans_tune.training.train(hp, beans.train, beans.validation, log=None).model
    before = [w.copy() for w in model.get_weights()]
    accuracy = inference.batch_stat_accuracy(model, beans.validation, 3, seed=0)
    assert 0 <= accuracy <= 1
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_moving_averages_equal_to_the_data_statistics_have_no_error(data_dir):
    import keras
    import numpy as np

    beans = beans_tune.images.Beans(data_dir, image_size=8)
    model = beans_tune.cnn.build_model(beans_tune.hparams.HParams(batch_norm=True, layers=2, units=4), image_size=8)
    assert inference.moving_average_error(model, beans.train)[0] > 0.01  # fresh: moving mean 0, variance 1
    for layer in [x for x in model.layers if isinstance(x, keras.layers.BatchNormalization)]:  # in order
        values = keras.Model(model.inputs, layer.input).predict(beans.train.x, verbose=0)
        axes = tuple(range(values.ndim - 1))
        layer.moving_mean.assign(values.mean(axis=axes))
        layer.moving_variance.assign(values.var(axis=axes))
    mean_error, var_error = inference.moving_average_error(model, beans.train)
    assert mean_error == pytest.approx(0, abs=1e-4) and var_error == pytest.approx(0, abs=1e-4)
    assert np.isfinite(mean_error)


batch_study = load_experiment("bn_batch_size")


def test_the_gap_is_read_at_the_epoch_of_best_validation_accuracy(data_dir, tmp_path, monkeypatch, capsys):
    real = beans_tune.training.train

    def train(hp, *args, seed=0, **kwargs):  # BN's gap grows with the batch; the baseline's is 0.2
        if not is_trial(kwargs):
            return real(hp.__class__(**{**hp.to_dict(), "epochs": 1}), *args, seed=seed, **kwargs)
        val = [0.5, 0.8, 0.7]  # best at epoch 2
        gap = hp.batch_size / 100 if hp.batch_norm else 0.2
        train_acc = [0.6, 0.8 + gap + seed / 100, 0.99]
        return beans_tune.training.TrainResult(None, {"val_accuracy": val, "accuracy": train_acc}, 0.8, 3, 0.0)

    patch_train(monkeypatch, train)
    out = tmp_path / "study"
    assert batch_study.main(["--data-dir", str(data_dir), "--image-size", "8", "--epochs", "3", "--seeds", "2",
                             "--batch-sizes", "4,16", "--out", str(out)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line[:1].isdigit()}
    # columns: size, steps, then train, val, gap (median [min, max]) for the baseline, then for BN
    images = len([p for p in (data_dir / "train").rglob("*") if p.is_file()])
    assert rows["4"][1] == str(-(-images // 4)) and rows["16"][1] == str(-(-images // 16))
    assert rows["4"][8:11] == ["0.205", "[0.200,", "0.210]"] and rows["16"][8:11] == ["0.205", "[0.200,", "0.210]"]
    assert rows["4"][17:20] == ["0.045", "[0.040,", "0.050]"] and rows["16"][17:20] == ["0.165", "[0.160,", "0.170]"]
    assert (out / "gap.png").stat().st_size > 0


landscape = load_experiment("bn_landscape")


def test_stepping_along_the_gradient_puts_the_weights_back_and_measures_the_loss_range(data_dir):
    import numpy as np

    beans = beans_tune.images.Beans(data_dir, image_size=8)
    model = beans_tune.cnn.build_model(beans_tune.hparams.HParams(batch_norm=True, layers=1, units=4), image_size=8)
    before = [w.copy() for w in model.get_weights()]
    x, y = beans.train.x[:6], beans.train.y[:6]
    spread, change = landscape.probe(model, x, y, (0.01, 1.0))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # moving statistics too
    assert spread > 0 and change > 0
    assert landscape.probe(model, x, y, (0.1, 0.1))[0] == pytest.approx(0, abs=1e-6)  # one step size: no range


STUDIES = {"bn_learning_rate": study, "bn_inference": inference, "bn_batch_size": batch_study,
           "bn_landscape": landscape}


@pytest.fixture
def roomy(monkeypatch):
    """The landscape study's 32-image batches fit: the generated data has only 12 training images."""
    monkeypatch.setattr(shared, "train_images", lambda data_dir: 1034)


def one_line_refusal(module, argv, capsys):
    """The study's exit code and its whole stderr, which must be one line."""
    code = module.main(argv)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return code, err


@pytest.mark.parametrize("module", STUDIES.values())
def test_a_data_dir_that_is_not_a_beans_folder_or_an_out_that_cannot_be_used_is_one_line_before_training(
        module, data_dir, tmp_path, capsys, roomy):
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    for argv, says in [(["--data-dir", str(tmp_path / "nowhere")], f"--data-dir: {tmp_path / 'nowhere'} is not a folder"),
                       (["--data-dir", str(tmp_path / "empty")], f"missing split folder: {tmp_path / 'empty' / 'train'}"),
                       (["--data-dir", ""], "--data-dir must name a folder, got an empty string"),
                       (["--out", ""], "--out must name a folder, got an empty string"),
                       (["--out", str(tmp_path / "file")], f"--out: {tmp_path / 'file'} is a file"),
                       (["--out", str(tmp_path / "file" / "sub")], "--out: cannot write in"),
                       (["--seed", "1"], "unrecognized arguments: --seed 1")]:
        argv = ["--data-dir", str(data_dir), "--out", str(out), *argv]
        code, err = one_line_refusal(module, argv, capsys)
        assert code == 2 and says in err, (argv, err)
        assert not out.exists() and not (tmp_path / "records.jsonl").exists()


@pytest.mark.parametrize("name", STUDIES)
def test_a_folder_holding_another_study_is_refused(name, data_dir, tmp_path, capsys, roomy):
    other = next(n for n in STUDIES if n != name)
    (tmp_path / "out").mkdir()
    shared.Records(tmp_path / "out", {"study": other, "data": shared.data_source(str(data_dir))}).keep()
    before = (tmp_path / "out" / "records.jsonl").read_text()
    code, err = one_line_refusal(STUDIES[name], ["--data-dir", str(data_dir), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and f"holds the study '{other}', not '{name}'" in err
    assert (tmp_path / "out" / "records.jsonl").read_text() == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != LOCK) == ["records.jsonl"]


def test_a_cell_is_the_median_and_range_of_what_was_measured():
    assert shared.median_range([0.1, 0.6, 0.5]) == "0.500 [0.100, 0.600]"
    assert shared.median_range([-0.06, -0.01, None]) == "-0.035 [-0.060, -0.010]"
    assert shared.median_range([None]) == "-"


@pytest.mark.parametrize("module, flag, value, says", [
    (study, "--rates", "0.001", "at least two distinct values, got '0.001'"), (study, "--rates", "0.001,0", "(0, 10], got 0"),
    (study, "--rates", "0.001,abc", "finite number, got 'abc'"), (inference, "--momenta", "0.9,1", "got 1"),
    (inference, "--momenta", "0.9,0.9", "at least two distinct values, got '0.9,0.9'"), (inference, "--batch-sizes", "4,0", "got 0"),
    (batch_study, "--batch-sizes", "16,nan", "an integer, got 'nan'"), (landscape, "--steps", "0.1,-1", "got -1")])
def test_a_bad_list_flag_is_one_line_before_training(module, flag, value, says, data_dir, tmp_path, capsys):
    code, err = one_line_refusal(module, ["--data-dir", str(data_dir), "--out", str(tmp_path / "out"), flag, value],
                                 capsys)
    assert code == 2 and f"argument {flag}: " in err and err.endswith(says)
    assert not (tmp_path / "out").exists()


def test_the_inference_study_resumes_and_refuses_other_settings(data_dir, tmp_path, monkeypatch, capsys):
    calls = []

    def measure(beans, momentum, seed, epochs, batch_sizes):
        calls.append((momentum, seed))
        if len(calls) == 3:
            raise KeyboardInterrupt  # a kill in the third training
        return {"momentum": momentum, "seed": seed, "moving": 0.5 + momentum / 10, "best_moving": 0.7, "swing": 0.1,
                **{f"batch{b}": 0.4 for b in batch_sizes}, "mean_error": 0.2, "var_error": 0.3}

    monkeypatch.setattr(inference, "measure", measure)
    argv = ["--data-dir", str(data_dir), "--image-size", "8", "--seeds", "2", "--momenta", "0.9,0.6",
            "--out", str(tmp_path / "out")]
    assert inference.main(argv) == 130 and capsys.readouterr().err.strip() == "bn_inference.py: interrupted"
    assert calls == [(0.9, 0), (0.9, 1), (0.6, 0)]
    assert inference.main(argv) == 0
    assert calls[3:] == [(0.6, 0), (0.6, 1)]  # only what the kill lost
    table = (tmp_path / "out" / "table.txt").read_text()
    assert "0.590 [0.590, 0.590]" in table and "0.560 [0.560, 0.560]" in table
    before = (tmp_path / "out" / "records.jsonl").read_text()
    capsys.readouterr()
    code, err = one_line_refusal(inference, argv + ["--epochs", "3"], capsys)
    assert code == 2 and "measured with other settings (--epochs 20 there, 3 now)" in err
    assert (tmp_path / "out" / "records.jsonl").read_text() == before and len(calls) == 5
    assert inference.main(argv + ["--momenta", "0.6,0.9"]) == 0 and len(calls) == 5  # the same lists, reordered


def test_a_folder_with_only_the_header_takes_other_settings_and_a_locked_or_foreign_file_is_refused(
        data_dir, tmp_path, monkeypatch, capsys):
    from beans_tune.tuning.outfolder import claim

    monkeypatch.setattr(inference, "measure", lambda beans, momentum, seed, epochs, batch_sizes: {
        "momentum": momentum, "seed": seed, "moving": 0.5, "best_moving": 0.6, "swing": None,
        **{f"batch{b}": 0.4 for b in batch_sizes}, "mean_error": 0.2, "var_error": 0.3})
    out = tmp_path / "out"
    argv = ["--data-dir", str(data_dir), "--image-size", "8", "--seeds", "1", "--momenta", "0.9,0.6", "--out", str(out)]
    out.mkdir()
    shared.Records(out, {"study": "bn_inference", "data": shared.data_source(str(data_dir)), "epochs": 2}).keep()
    assert inference.main(argv) == 0  # killed before its first record: nothing to protect
    assert json.loads((out / "records.jsonl").read_text().splitlines()[0])["settings"]["epochs"] == 20
    with claim(out):
        code, err = one_line_refusal(inference, argv, capsys)
    assert code == 2 and "is in use by another run" in err
    for first in ("[]", "garbage", '{"settings": null}'):
        (out / "records.jsonl").write_text(first + "\n")
        code, err = one_line_refusal(inference, argv, capsys)
        assert code == 2 and err.endswith(f"{out / 'records.jsonl'} is not a study's records file; use another --out")


def test_a_failed_training_is_left_out_of_the_means_and_said(data_dir, tmp_path, known_curves, monkeypatch, capsys):
    instant = beans_tune.training.train

    def train(hp, *args, seed=0, **kwargs):
        if hp.batch_norm and hp.learning_rate == 1e-3 and seed == 1 and is_trial(kwargs):
            raise RuntimeError("out of memory")
        return instant(hp, *args, seed=seed, **kwargs)

    patch_train(monkeypatch, train)
    out = tmp_path / "study"
    assert study.main(["--data-dir", str(data_dir), "--image-size", "8", "--epochs", "4", "--seeds", "2",
                       "--rates", "1e-3,1e-2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1:] for line in printed.splitlines() if line[:1].isdigit()}
    assert lines["0.001"][3:] == ["0.900", "[0.900,", "0.900]"]  # seed 0 only, not (0.9 + 0) / 2
    assert "1 training(s) failed or timed out and are left out of the means" in printed


def test_the_landscape_study_resumes_and_reads_each_epoch_and_column(data_dir, tmp_path, monkeypatch, capsys, roomy):
    calls = []

    def trajectory(beans, batch_norm, seed, epochs, steps, batches):
        calls.append((batch_norm, seed))
        if len(calls) == 2:
            raise KeyboardInterrupt
        scale = 1 if batch_norm else 10
        return [(e, scale * e + seed, 100 * scale * e + seed) for e in range(1, epochs + 1)]

    monkeypatch.setattr(landscape, "trajectory", trajectory)
    argv = ["--data-dir", str(data_dir), "--image-size", "8", "--epochs", "2", "--seeds", "2", "--batches", "1",
            "--out", str(tmp_path / "out")]
    assert landscape.main(argv) == 130
    assert landscape.main(argv) == 0
    assert calls == [(False, 0), (False, 1), (False, 1), (True, 0), (True, 1)]  # the finished one kept
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()
            if line[:1].isdigit() and "[" in line}
    # loss range baseline, bn, gradient change baseline, bn: median [min, max] over the 2 seeds
    assert rows["1"] == ["10.500", "[10.000,", "11.000]", "1.500", "[1.000,", "2.000]",
                         "1000.500", "[1000.000,", "1001.000]", "100.500", "[100.000,", "101.000]"]
    assert rows["2"][:3] == ["20.500", "[20.000,", "21.000]"] and rows["2"][9:] == ["200.500", "[200.000,", "201.000]"]


def test_a_model_whose_every_training_failed_has_no_result(data_dir, tmp_path, known_curves, monkeypatch, capsys):
    instant = beans_tune.training.train

    def train(hp, *args, seed=0, **kwargs):
        if hp.batch_norm and is_trial(kwargs):
            raise RuntimeError("out of memory")
        return instant(hp, *args, seed=seed, **kwargs)

    patch_train(monkeypatch, train)
    assert study.main(["--data-dir", str(data_dir), "--image-size", "8", "--epochs", "4", "--seeds", "1",
                       "--rates", "1e-3,1e-2", "--out", str(tmp_path / "study")]) == 0
    printed = capsys.readouterr().out
    assert "bn      : no result (every training failed)" in printed
    assert "2 training(s) failed or timed out and are left out of the means" in printed


@pytest.mark.slow
def test_the_batch_study_names_what_it_left_out_and_a_refused_grid_leaves_no_records(data_dir, tmp_path, monkeypatch,
                                                                                     capsys):
    real = beans_tune.training.train

    def train(hp, *args, seed=0, **kwargs):
        if not is_trial(kwargs):
            return real(hp.__class__(**{**hp.to_dict(), "epochs": 1}), *args, seed=seed, **kwargs)
        if hp.batch_norm and hp.batch_size == 16:
            return beans_tune.training.TrainResult(None, {"val_accuracy": [0.3], "loss": [float("nan")]},
                                                   float("nan"), 1, 0.0, status="nan")
        return beans_tune.training.TrainResult(None, {"val_accuracy": [0.5, 0.8], "accuracy": [0.6, 0.9]}, 0.8, 2, 0.0)

    patch_train(monkeypatch, train)
    out = tmp_path / "study"
    assert batch_study.main(["--data-dir", str(data_dir), "--image-size", "8", "--epochs", "2", "--seeds", "1",
                             "--batch-sizes", "4,16", "--out", str(out)]) == 0
    assert "left out: 1 diverged training(s)" in capsys.readouterr().out
    (out / "records.jsonl").unlink()  # a folder from before records.jsonl existed
    assert study.main(["--data-dir", str(data_dir), "--out", str(out)]) == 2  # its grid refuses another search
    assert not (out / "records.jsonl").exists()
