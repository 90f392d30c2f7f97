"""train_baseline.py and train_bn.py end to end on generated folders."""

import csv
import json
import os
import subprocess
import sys

import pytest

import beans_tune.images
import beans_tune.training
import train_baseline
import train_bn
from conftest import ROOT, patch_train, split_folders

FAST = ["--image-size", "8", "--epochs", "1", "--layers", "1", "--units", "4", "--batch-size", "4"]


def test_baseline_writes_every_output(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_baseline.main(["--data-dir", str(data_dir), "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("train_baseline.py: resolved configuration")
    assert "epoch   1/1  loss" in printed
    assert "model     val_accuracy ± se  test_accuracy ± se  epochs  train_s" in printed
    assert "(± one standard error over the 12 validation and 12 test images" in printed
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "history.csv", "metrics.json", "model.keras"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["hparams"]["batch_norm"] is False
    assert {"val_accuracy", "test_accuracy", "epochs", "train_seconds"} <= set(metrics)
    assert metrics["epochs"] == 1
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 1 and {"loss", "val_accuracy"} <= set(rows[0])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_bn_script_trains_with_bn(data_dir, tmp_path):
    out = tmp_path / "run"
    # a word with spaces around it is read as the tuning scripts read it
    assert train_bn.main(["--data-dir", str(data_dir), "--out", str(out), "--bn-momentum", "0.8",
                          "--schedule", " cosine ", "--optimizer", "sgd ", "--augment", "TRUE", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["hparams"]["batch_norm"] is True and metrics["hparams"]["bn_momentum"] == 0.8
    assert (metrics["hparams"]["schedule"], metrics["hparams"]["optimizer"]) == ("cosine", "sgd")
    assert metrics["hparams"]["augment"] is True
    import keras
    network = keras.saving.load_model(out / "model.keras").layers[-1]  # behind the resizing and scaling
    assert any(l.__class__.__name__ == "BatchNormalization" for l in network.layers)


def test_predict_names_a_class_for_each_raw_image_and_refuses_bad_input(data_dir, tmp_path, capsys):
    import keras

    from beans_tune import predict

    out = tmp_path / "run"
    assert train_baseline.main(["--data-dir", str(data_dir), "--out", str(out), *FAST]) == 0
    images = [str(next((data_dir / "test" / c).iterdir())) for c in ("angular_leaf_spot", "bean_rust", "healthy")]
    capsys.readouterr()
    assert predict.main([str(out), *images]) == 0  # the folder or its model.keras
    lines = capsys.readouterr().out.splitlines()[2:]
    assert [line.split()[0] for line in lines] == images
    assert {line.split()[1] for line in lines} <= {"angular_leaf_spot", "bean_rust", "healthy"}
    assert all(1 / 3 <= float(line.split()[2]) <= 1 for line in lines)  # the most probable of 3 classes
    old = tmp_path / "old"  # a model that takes preprocessed arrays, as saved before raw images
    old.mkdir()
    keras.saving.load_model(out / "model.keras").layers[-1].save(old / "model.keras")
    (old / "metrics.json").write_text((out / "metrics.json").read_text())
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "model.keras").write_bytes((out / "model.keras").read_bytes())
    for argv, message in [([str(out), str(out / "metrics.json")], "metrics.json: not an image"),
                          ([str(tmp_path / "none"), images[0]], "none: no such model file"),
                          ([str(old), images[0]], "takes preprocessed 8x8 images"),
                          ([str(tmp_path / "bare"), images[0]], "no metrics.json or best.json beside")]:
        assert predict.main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.splitlines()) == 1 and message in captured.err


@pytest.mark.slow
def test_compare_trains_both_with_the_same_hparams(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_bn.main(["--data-dir", str(data_dir), "--out", str(out), "--compare", *FAST]) == 0
    table = capsys.readouterr().out.split("model     val_accuracy")[1]
    assert "\nbaseline " in table and "\nbn " in table
    base = json.loads((out / "baseline" / "metrics.json").read_text())
    bn = json.loads((out / "bn" / "metrics.json").read_text())
    assert (base["hparams"]["batch_norm"], bn["hparams"]["batch_norm"]) == (False, True)
    assert {k: v for k, v in base["hparams"].items() if k != "batch_norm"} == \
        {k: v for k, v in bn["hparams"].items() if k != "batch_norm"}
    assert (out / "curves.png").stat().st_size > 0
    for name in ("baseline", "bn"):
        assert (out / name / "model.keras").exists() and (out / name / "history.csv").exists()


def test_env_variable_is_used_when_no_flag(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BEANS_DATA_DIR", str(data_dir))
    out = tmp_path / "run"
    assert train_baseline.main(["--out", str(out), *FAST]) == 0
    assert json.loads((out / "metrics.json").read_text())["data"] == str(data_dir)


@pytest.mark.parametrize("argv, message", [
    (["--data-dir", "{missing}"], "data folder not found"),
    (["--data-dir", "{data}", "--learning-rate", "-1"], "learning_rate must be > 0"),
    (["--data-dir", "{data}", "--layers", "0"], "layers must be an integer >= 1"),
    (["--data-dir", "{data}", "--batch-size", "0"], "batch_size must be an integer >= 1"),
    (["--data-dir", "{data}", "--beta-1", "1"], r"beta_1 must be in [0, 1)"),
    (["--data-dir", "{data}", "--layers", "two"], "--layers: expected int, got 'two'"),
    (["--data-dir", "{data}", "--no-such-flag", "1"], "unrecognized arguments: --no-such-flag"),
    (["--data-dir", "{data}", "--image-size", "2"], "argument --image-size: must be in [8, 512], got 2"),
    (["--data-dir", "{data}", "--batch-norm"], "unrecognized arguments: --batch-norm"),
    (["--data-dir", "{data}", "--bn-momentum", "0.9"], "unrecognized arguments: --bn-momentum"),  # no BN here
    (["--data-dir", "{data}", "--augment", "maybe"], "--augment: expected bool, got 'maybe'"),
    (["--data-dir", "{data}", "--augment"], "argument --augment: expected one argument"),  # true|false, as the searches
])
def test_bad_input_is_one_line_and_exit_2(data_dir, tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    argv = [a.format(missing=tmp_path / "nowhere", data=data_dir) for a in argv]
    code = train_baseline.main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not out.exists()  # nothing half-written


def test_corrupt_image_is_named_and_nothing_written(data_dir, tmp_path, capsys):
    bad = data_dir / "test" / "healthy" / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 garbage")
    out = tmp_path / "run"
    assert train_bn.main(["--data-dir", str(data_dir), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("train_bn.py: error: not a readable image:") and "bad.jpg" in err
    assert not out.exists()



@pytest.mark.slow
@pytest.mark.parametrize("script, module, named", [("train_bn", "tensorflow_datasets", "tensorflow_datasets"),
                                                   ("tune_grid", "keras", "tensorflow"),  # TensorFlow imports Keras
                                                   ("tune_bayes", "skopt", "skopt")])
def test_a_broken_install_is_one_line_before_anything_runs(data_dir, tmp_path, script, module, named):
    # a package that fails on import as a protobuf mismatch does (a TypeError, not an ImportError),
    # found first on the path of a fresh process, as a broken install is
    fake = tmp_path / "site" / module
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise TypeError("Descriptors cannot be created directly.")\n')
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, str(ROOT / f"{script}.py"), "--data-dir", str(data_dir), "--out", str(out),
                           *FAST], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT)])})
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith(f"{script}.py")]  # TensorFlow logs too
    assert errors == [f"{script}.py: error: {named} does not import (TypeError: Descriptors cannot be created "
                      "directly.); reinstall in a fresh virtual environment: pip install -r requirements.txt"], done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() and done.stdout == ""  # refused before the configuration is echoed


def test_offline_tfds_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    from test_data import unreachable_host

    monkeypatch.delenv("BEANS_DATA_DIR", raising=False)
    monkeypatch.setattr(beans_tune.images, "beans_prepared", lambda: False)
    monkeypatch.setattr(beans_tune.images, "TFDS_HOST", unreachable_host())
    assert train_baseline.main(["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data-dir" in err and "BEANS_DATA_DIR" in err, err


def test_out_that_is_a_file_is_refused_before_training(data_dir, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    assert train_baseline.main(["--data-dir", str(data_dir), "--out", str(target), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"train_baseline.py: error: --out must be a folder, {target} is a file"
    assert target.read_text() == "not a folder"


def test_outputs_get_the_usual_file_mode(data_dir, tmp_path):
    import os

    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        assert train_baseline.main(["--data-dir", str(data_dir), "--out", str(out), *FAST]) == 0
    finally:
        os.umask(old)
    assert {oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {"0o644"}


@pytest.mark.slow
def test_each_model_selects_on_validation_and_reads_the_test_split_once(data_dir, tmp_path, monkeypatch):
    trained, evaluated = [], []
    real_train, real_evaluate = beans_tune.training.train, beans_tune.training.evaluate

    def spy_train(hp, train, val, *args, **kwargs):
        result = real_train(hp, train, val, *args, **kwargs)
        trained.append((split_folders(train), split_folders(val), result.model))
        return result

    def spy_evaluate(model, split, *args, **kwargs):
        evaluated.append((model, split_folders(split)))
        return real_evaluate(model, split, *args, **kwargs)

    patch_train(monkeypatch, spy_train)
    monkeypatch.setattr(beans_tune.training, "evaluate", spy_evaluate)
    assert train_bn.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--compare", *FAST]) == 0
    assert [(t, v) for t, v, _ in trained] == [(["train"], ["validation"])] * 2  # early stopping and the kept epoch
    models = [model for _, _, model in trained]
    assert [(id(m), s) for m, s in evaluated] == [(id(m), ["test"]) for m in models]  # once per model, after training


def test_predict_names_the_class_of_the_models_output_by_the_saved_class_order(tmp_path, capsys):
    import keras
    import numpy as np
    from PIL import Image

    from beans_tune import cnn, predict

    network = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
                                keras.layers.Dense(3, activation="softmax", kernel_initializer="zeros",
                                                   bias_initializer=keras.initializers.Constant([0.0, 0.0, 4.0]))])
    run = tmp_path / "run"
    run.mkdir()
    cnn.for_raw_images(network, 8).save(run / "model.keras")  # always the third class
    (run / "best.json").write_text(json.dumps({"classes": ["oak", "elm", "ash"]}))
    image = tmp_path / "leaf\udce9.png"  # a file name that is not UTF-8
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    assert predict.main([str(run), str(image)]) == 0
    assert capsys.readouterr().out.splitlines()[2].split() == [f"{tmp_path}/leaf\\xe9.png", "ash", f"{np.exp(4) / (2 + np.exp(4)):.4f}"]
    for classes in (None, "abc", ["oak"], [1, 2, 3]):
        (run / "best.json").write_text(json.dumps({"classes": classes}))
        assert predict.main([str(run), str(image)]) == 2
        assert capsys.readouterr().err.splitlines() == [f"predict.py: error: {run / 'best.json'}: its classes are "
                                                        "not a list of 2 or more names"]
    (tmp_path / "compare" / "bn").mkdir(parents=True)
    (tmp_path / "compare" / "bn" / "model.keras").write_bytes((run / "model.keras").read_bytes())
    assert predict.main([str(tmp_path / "compare"), str(image)]) == 2
    assert "(it holds bn/: name one)" in capsys.readouterr().err


def test_bns_gain_over_seeds_is_each_seeds_paired_difference_and_their_median():
    from beans_tune.scripts import format_gain

    text = format_gain({3: {"baseline": 0.75, "bn": 0.875}, 4: {"baseline": 0.8, "bn": 0.775},
                        5: {"baseline": 0.7, "bn": 0.8}}, 128)
    assert [line.split()[-1] for line in text.splitlines()[2:5]] == ["+0.1250", "-0.0250", "+0.1000"]
    assert text.splitlines()[-1] == ("BN's gain over the baseline on the test split (128 images), 3 seeds: median "
                                     "+0.1000 [-0.0250, +0.1250]; BN higher on 2 of 3")


@pytest.mark.slow
def test_compare_over_seeds_trains_both_models_per_seed_each_in_its_folder(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_bn.main(["--data-dir", str(data_dir), "--out", str(out), "--compare", "--seed", "7", "--seeds", "2",
                          *FAST]) == 0
    printed = capsys.readouterr().out
    assert printed.count("===== seed ") == 2 and "2 seeds: median " in printed
    for seed in (7, 8):
        for model in ("baseline", "bn"):
            metrics = json.loads((out / f"seed-{seed}" / model / "metrics.json").read_text())
            assert (metrics["seed"], metrics["hparams"]["batch_norm"]) == (seed, model == "bn")


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "2"], "--seeds goes with --compare"),
    (["--compare", "--seeds", "0"], "argument --seeds: must be in [1, 100]"),
    (["--compare", "--seeds", "3", "--seed", str(2**32 - 2)], "runs past the last seed"),
])
def test_bad_seeds_are_one_line_before_training(data_dir, tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert train_bn.main(["--data-dir", str(data_dir), "--out", str(out), *argv, *FAST]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()
