"""Bad input, by class: every numeric flag (infinities, NaN, overflow, out of range), every path,
search settings the data cannot satisfy, abbreviated flags. Each ends in one line on stderr and
exit code 2, before any training, with nothing written. Property-based tests (hypothesis) check
that any string given to the space parser or the numeric flags is a value or one UsageError."""

import json
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import beans_tune.hparams
import beans_tune.training
import train_baseline
import train_bn
import tune_bayes
import tune_grid
import tune_random
from beans_tune import cli
from beans_tune.tuning.space import Dim, build_space, parse_dim
from conftest import patch_train

# The searches tune the BN model by default (test_the_searches_tune_the_bn_model_by_default);
# these tests are about the search machinery, which the cheaper baseline model exercises as well.
TINY = ["--image-size", "8", "--epochs", "1", "--units", "4", "--batch-size", "4", "--decay", "0", "--batch-norm", "false",
        "--augment", "false"]
NUMERIC = [n for n in beans_tune.hparams.HPARAM_NAMES if beans_tune.hparams.hparam_type(n) in (int, float)]


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("trained despite bad input")

    patch_train(monkeypatch, refuse)


def refused(capsys, code, out, *messages):
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for message in messages:
        assert message in err, err
    assert out is None or not out.exists()
    return err


# --- numbers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e400"])
def test_non_finite_hyperparameters_are_refused(data_dir, tmp_path, capsys, no_training, name, text):
    out = tmp_path / "run"
    code = train_bn.main(["--data-dir", str(data_dir), "--out", str(out), f"{cli.flag(name)}={text}"])
    refused(capsys, code, out, cli.flag(name), "finite")


@pytest.mark.parametrize("name", [n for n in NUMERIC if beans_tune.hparams.describe_range(n)])
def test_hyperparameters_above_their_range_are_refused(data_dir, tmp_path, capsys, no_training, name):
    high = beans_tune.hparams._FIELDS[name].metadata["high"]
    out = tmp_path / "run"
    code = train_bn.main(["--data-dir", str(data_dir), "--out", str(out), cli.flag(name), str(high * 10 + 1)])
    refused(capsys, code, out, name)


@pytest.mark.parametrize("script, argv, message", [
    (train_baseline, ["--seed", "-1"], "argument --seed: must be in [0, 4294967295]"),
    (train_baseline, ["--seed", "8589934592"], "argument --seed: must be in"),
    (train_baseline, ["--seed", "nan"], "argument --seed: expected an integer"),
    (train_baseline, ["--image-size", "inf"], "argument --image-size: expected an integer"),
    (train_baseline, ["--image-size", "4096"], "argument --image-size: must be in [8, 512]"),
    (train_baseline, ["--limit", "1e400"], "argument --limit: expected an integer"),
    (tune_grid, ["--n-jobs", "65"], "argument --n-jobs: must be in [1, 64]"),
    (tune_grid, ["--n-jobs", "0"], "argument --n-jobs: must be in [1, 64]"),
    (tune_grid, ["--top", "0"], "argument --top: must be in"),
    (tune_grid, ["--trial-timeout", "inf"], "argument --trial-timeout: expected a finite number"),
    (tune_grid, ["--trial-timeout", "0"], "argument --trial-timeout: must be in (0, 1e+06]"),
    (tune_grid, ["--threads-per-trial", "0"], "argument --threads-per-trial: must be in [1, 256]"),
    (tune_grid, ["--cv", "1"], "argument --cv: must be in [2, 100]"),
    (tune_grid, ["--connect-timeout", "5"], "--connect-timeout goes with --scheduler"),
    (tune_random, ["--n-iter", "inf"], "argument --n-iter: expected an integer"),
    (tune_random, ["--keep", "nan"], "argument --keep: expected a finite number"),
    (tune_random, ["--keep", "0"], "argument --keep: must be in (0, 1]"),
    (tune_random, ["--refine", "-1"], "argument --refine: must be in [0, 20]"),
    (tune_bayes, ["--n-calls", "1e9"], "argument --n-calls: must be in [1, 10000]"),
    (tune_bayes, ["--n-initial-points", "0"], "argument --n-initial-points: must be in"),
    (tune_bayes, ["--n-calls", "3"], "--n-initial-points 4 is above --n-calls 3: every point would be random"),
    (tune_random, ["--units", "inf"], "--units: expected a finite number"),
    (tune_random, ["--layers", "1:inf"], "--layers: expected a finite number"),
    (tune_random, ["--learning-rate", "1e-4:inf"], "--learning-rate: expected a finite number"),
    (tune_random, ["--learning-rate", "nan:1"], "--learning-rate: expected a finite number"),
    (tune_random, ["--units", "1:100000"], "units must be an integer <= 4096"),
    (tune_bayes, ["--layers", "1:9"], "layers must be an integer <= 8"),
])
def test_numeric_flags_are_checked(data_dir, tmp_path, capsys, no_training, script, argv, message):
    out = tmp_path / "run"
    code = script.main(["--data-dir", str(data_dir), "--out", str(out), *argv])
    refused(capsys, code, out, message)


def test_the_ranges_are_in_help(capsys):
    assert train_baseline.main(["--help"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "range [1, 8]" in printed and "range (0, 10]" in printed and "range [8, 512]" in printed


# --- flags -----------------------------------------------------------------------------------

def test_abbreviated_flags_are_not_taken(data_dir, tmp_path, capsys, no_training):
    out = tmp_path / "run"
    code = tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--learning-rat", "0.1"])
    refused(capsys, code, out, "unrecognized arguments: --learning-rat")


# --- paths -----------------------------------------------------------------------------------

def test_paths(data_dir, tmp_path, capsys, no_training):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    binary = tmp_path / "grid.json"
    binary.write_bytes(b"\xff\xfe\x00{")
    cases = [
        (tune_grid, ["--grid", str(tmp_path)], "is a folder, not a JSON file"),
        (tune_grid, ["--grid", str(binary)], "is not UTF-8 text"),
        (train_baseline, ["--out", str(a_file / "run")], "--out: cannot write in"),
        (tune_grid, ["--out", str(a_file / "run")], "--out: cannot write in"),
        (train_baseline, ["--out", ""], "--out must name a folder"),
        # not "no --data-dir": that would fall through to TFDS's download
        (train_bn, ["--data-dir", " "], "--data-dir must name a folder, got an empty string"),
        (tune_random, ["--data-dir", ""], "--data-dir must name a folder, got an empty string"),
    ]
    for script, argv, message in cases:
        argv = ([] if "--data-dir" in argv else ["--data-dir", str(data_dir)]) + argv + (
            [] if "--out" in argv else ["--out", str(tmp_path / "o")])
        refused(capsys, script.main(argv), tmp_path / "o", message)
    refused(capsys, train_baseline.main(["--data-dir", str(a_file), "--out", str(tmp_path / "o")]), tmp_path / "o",
            f"data folder {a_file} is not a folder")


def test_an_out_that_cannot_be_made_is_refused_before_training(data_dir, tmp_path, capsys, no_training):
    """--out inside a file: the folder cannot be made, like one in a read-only place (which root,
    running the tests, could write anyway)."""
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "run"
    for script in (train_baseline, tune_grid):
        refused(capsys, script.main(["--data-dir", str(data_dir), "--out", str(out)]), out,
                "--out: cannot write in", "Not a directory")


# --- search settings the data cannot satisfy -----------------------------------------------

def test_cv_larger_than_a_class_is_refused_before_training(data_dir, tmp_path, capsys, no_training):
    out = tmp_path / "run"  # 8 images per class in train+validation
    code = tune_grid.main(["--data-dir", str(data_dir), "--out", str(out), "--cv", "9", "--layers", "1,2", *TINY])
    refused(capsys, code, out, "--cv 9: the smallest class holds 8 images")


@pytest.mark.slow
def test_a_space_smaller_than_asked_runs_what_exists(data_dir, tmp_path, capsys):
    for script, argv in ((tune_bayes, ["--n-calls", "6"]), (tune_random, ["--n-iter", "5"])):
        out = tmp_path / script.__name__
        assert script.main(["--data-dir", str(data_dir), "--out", str(out), "--layers", "1,2",
                            "--learning-rate", "1e-3", *argv, *TINY]) == 0
        err = capsys.readouterr().err
        assert "the space holds fewer configurations than asked for; running 2 trainings" in err
        assert len((out / "results.csv").read_text().splitlines()) == 1 + 2


# --- properties ------------------------------------------------------------------------------

SPEC_TEXT = st.one_of(
    st.text(max_size=20),
    st.builds(lambda a, b: f"{a}:{b}", st.floats(allow_nan=True, allow_infinity=True), st.floats()),
    st.builds(lambda xs: ",".join(xs), st.lists(st.sampled_from(
        ["1", "0", "-1", "0.5", "1e-3", "inf", "nan", "true", "adam", "", "2.5", "1e400", "64"]), max_size=4)),
    st.builds(lambda a, b: f"{a}:{b}", st.integers(-5, 5000), st.integers(-5, 5000)),
)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(beans_tune.hparams.HPARAM_NAMES), text=SPEC_TEXT, allow_range=st.booleans())
@example(name="learning_rate", text="5e-323:0.03125", allow_range=True)  # low * high underflows to 0 (found here)
def test_any_spec_is_a_valid_dimension_or_one_usage_error(name, text, allow_range):
    try:
        dim = parse_dim(name, text, allow_range)
    except beans_tune.hparams.UsageError as err:
        assert "\n" not in str(err)
        return
    assert isinstance(dim, Dim)
    values = [dim.low, dim.high] if dim.is_range else list(dim.choices)
    for value in values:
        beans_tune.hparams.HParams(**{name: value})  # every bound or choice is a valid hyperparameter
    json.dumps(dim.spec())
    dim.describe()
    dim.scipy()
    dim.skopt()


@settings(max_examples=200, deadline=None)
@given(overrides=st.dictionaries(st.sampled_from(beans_tune.hparams.HPARAM_NAMES), SPEC_TEXT, max_size=3))
def test_any_flags_build_a_space_or_one_usage_error(overrides):
    try:
        dims, fixed = build_space({"learning_rate": "1e-4:1e-1", "layers": "1:4"}, overrides, True)
    except beans_tune.hparams.UsageError:
        return
    beans_tune.hparams.HParams(**fixed)


@settings(max_examples=300, deadline=None)
@given(values=st.fixed_dictionaries({}, optional={n: st.one_of(st.floats(), st.integers(-10**6, 10**6))
                                                  for n in NUMERIC}))
def test_any_numbers_are_hyperparameters_or_one_usage_error(values):
    try:
        hp = beans_tune.hparams.HParams(**values)
    except beans_tune.hparams.UsageError:
        return
    for name, value in values.items():
        assert math.isfinite(getattr(hp, name))


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=12), st.floats().map(repr), st.integers().map(str)))
def test_numeric_flag_types_give_a_value_or_argparse_error(text):
    import argparse

    for parse in (cli.number(int, 1, 64), cli.number(float, 0, 1, low_open=True)):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError:
            continue
        assert math.isfinite(value)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), name=st.sampled_from(NUMERIC))
def test_every_value_in_range_is_accepted_by_every_parser(data, name):
    """The other side of the properties above: a value inside a hyperparameter's range passes
    HParams, its flag's parser, the space and the numeric flag type, unchanged."""
    meta = beans_tune.hparams._FIELDS[name].metadata
    kind = beans_tune.hparams.hparam_type(name)
    if kind is int:
        value = data.draw(st.integers(int(meta["low"]), int(meta["high"])))
    else:
        value = data.draw(st.floats(meta["low"], meta["high"], exclude_min=meta["low_open"],
                                    exclude_max=meta["high_open"], allow_subnormal=False))
    assert getattr(beans_tune.hparams.HParams(**{name: value}), name) == value
    assert parse_dim(name, repr(value), allow_range=True).choices == (value,)
    assert build_space({}, {name: repr(value)}, True) == ([], {name: value})
    assert cli.number(kind, meta["low"], meta["high"], low_open=meta["low_open"])(repr(value)) == value
