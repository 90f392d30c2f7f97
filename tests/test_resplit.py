"""experiments/resplit.py: resplits keep the canonical sizes and class balance, are the same for
the same number, are links; runs resume, pair up, and refuse bad input before anything trains."""

import csv
import importlib.util
import json
import signal
import subprocess
import sys
import time

import pytest

from beans_tune.hparams import UsageError
from conftest import ROOT, make_image_folder

RESPLIT = ROOT / "experiments" / "resplit.py"
spec = importlib.util.spec_from_file_location("resplit", RESPLIT)
resplit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(resplit)

TINY = ["--image-size", "8", "--epochs", "1", "--units", "4", "--layers", "1"]


def counts(dealt):
    return {split: sorted((c, sum(1 for _, k, _ in members if k == c)) for c in {k for _, k, _ in members})
            for split, members in dealt.items()}


@pytest.fixture
def uneven(tmp_path):
    """Splits of different sizes per class, as beans's are."""
    root = make_image_folder(tmp_path / "pool", per_class=3, splits=("validation", "test"))
    make_image_folder(root, per_class=9, splits=("train",), seed=1)
    (root / "train" / "healthy" / "healthy_8.jpg").unlink()
    return root


def test_a_resplit_deals_every_image_once_with_the_canonical_sizes_per_class(uneven):
    images = resplit.labelled_images(uneven)
    keys = sorted(key for members in images.values() for key, _, _ in members)
    assert len(keys) == 3 * 3 + 3 * 3 + 9 * 3 - 1
    first = resplit.resplit(images, 1)
    assert counts(first) == counts(images)
    dealt = [key for members in first.values() for key, _, _ in members]
    assert sorted(dealt) == keys, "every image in exactly one split"
    assert resplit.resplit(images, 1) == first, "the same number deals the same resplit"
    assert resplit.resplit(images, 2)["test"] != first["test"]
    assert resplit.resplit(images, 0) == images, "resplit 0 is the canonical split"
    moved = {key for key, _, _ in first["test"]} - {key for key, _, _ in images["test"]}
    assert moved, "a resplit's test split holds images the canonical one does not"


def test_a_resplit_depends_on_the_images_not_on_where_they_lie(uneven, tmp_path):
    import shutil

    copy = shutil.copytree(uneven, tmp_path / "elsewhere")
    here = resplit.resplit(resplit.labelled_images(uneven), 3)
    there = resplit.resplit(resplit.labelled_images(copy), 3)
    assert {s: [k for k, _, _ in m] for s, m in here.items()} == {s: [k for k, _, _ in m] for s, m in there.items()}


@pytest.mark.parametrize("hash_seed", ["1", "2"])
def test_a_resplit_is_the_same_in_another_process(uneven, hash_seed):
    # what a resplit holds must not follow anything that differs between processes (Python's
    # hash() of a string does, with PYTHONHASHSEED): a resumed bench would mix two splits
    import os

    here = json.dumps(resplit.resplit(resplit.labelled_images(uneven), 2), default=str)
    code = ("import importlib.util, json, sys; from pathlib import Path; "
            "spec = importlib.util.spec_from_file_location('resplit', sys.argv[1]); "
            "resplit = importlib.util.module_from_spec(spec); spec.loader.exec_module(resplit); "
            "print(json.dumps(resplit.resplit(resplit.labelled_images(Path(sys.argv[2])), 2), default=str))")
    there = subprocess.run([sys.executable, "-c", code, str(RESPLIT), str(uneven)], capture_output=True,
                           text=True, check=True, env={**os.environ, "PYTHONHASHSEED": hash_seed}, cwd=ROOT).stdout
    assert json.loads(there) == json.loads(here)


def test_resplit_folders_are_links_made_once(uneven, tmp_path):
    images = resplit.labelled_images(uneven)
    folder = resplit.make_resplit(tmp_path / "splits" / "resplit-1", images, 1, uneven)
    links = sorted(p for p in folder.rglob("*") if p.is_symlink())
    assert len(links) == sum(len(m) for m in images.values())
    assert all(p.resolve().is_relative_to(uneven.resolve()) for p in links)
    assert {p.relative_to(folder).parts[0] for p in links} == {"train", "validation", "test"}
    stamp = (folder / resplit.LISTING).stat().st_mtime_ns
    resplit.make_resplit(folder, images, 1, uneven)
    assert (folder / resplit.LISTING).stat().st_mtime_ns == stamp, "made once"
    with pytest.raises(UsageError, match="other images"):
        resplit.make_resplit(folder, images, 2, uneven)


def test_a_resplit_folder_missing_an_image_is_refused_and_two_benches_make_one_folder(uneven, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    images = resplit.labelled_images(uneven)
    folder = tmp_path / "splits" / "resplit-1"
    with ThreadPoolExecutor(4) as pool:  # under the lock, one makes it and the others find it made
        made = list(pool.map(lambda _: resplit.make_resplit(folder, images, 1, uneven), range(4)))
    assert made == [folder] * 4
    assert len([p for p in folder.rglob("*") if p.is_symlink()]) == sum(len(m) for m in images.values())
    next(p for p in folder.rglob("*") if p.is_symlink()).unlink()
    with pytest.raises(UsageError, match="lacks"):
        resplit.make_resplit(folder, images, 1, uneven)


@pytest.mark.slow
def test_runs_a_command_and_its_rival_on_the_same_resplits_and_resumes(data_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["--data-dir", str(data_dir), "--resplits", "1", "--first", "2", "--out", str(out),
            "--vs", "train_baseline.py " + " ".join(TINY), "--", "train_bn.py", *TINY]
    assert resplit.main(argv) == 0
    rows = list(csv.DictReader((out / "resplits.csv").open()))
    assert [int(r["resplit"]) for r in rows] == [2] and [int(r["seed"]) for r in rows] == [2]
    for row, k in zip(rows, (2,)):
        bn = json.loads((out / "main" / f"resplit-{k}" / "metrics.json").read_text())
        base = json.loads((out / "vs" / f"resplit-{k}" / "metrics.json").read_text())
        assert (bn["hparams"]["batch_norm"], base["hparams"]["batch_norm"]) == (True, False)
        assert bn["seed"] == base["seed"] == k
        assert bn["data"] == base["data"] == str(out / "splits" / f"resplit-{k}"), "each run reads its resplit"
        assert float(row["test_accuracy"]) == bn["test_accuracy"]
        assert float(row["vs_test_accuracy"]) == base["test_accuracy"]
        # written with 6 decimals
        assert float(row["test_difference"]) == pytest.approx(bn["test_accuracy"] - base["test_accuracy"], abs=1e-6)
    text = (out / "resplits.txt").read_text()
    assert "paired difference in test accuracy" in text and "sign test p" in text
    capsys.readouterr()
    stamp = (out / "main" / "resplit-2" / "metrics.json").stat().st_mtime_ns
    (out / "vs" / "resplit-2" / "metrics.json").unlink()  # a run cut short is run again
    assert resplit.main(argv) == 0
    printed = capsys.readouterr().out
    assert (out / "main" / "resplit-2" / "metrics.json").stat().st_mtime_ns == stamp, "finished runs are read back"
    assert printed.count("(read back)") == 1
    assert (out / "vs" / "resplit-2" / "metrics.json").exists()
    walls = json.loads((out / "vs" / "resplit-2.wall.json").read_text())["invocations"]
    assert len(walls) == 2, "a run's wall time adds up over the invocations that made it"


def test_an_interrupted_run_keeps_its_wall_time(data_dir, tmp_path, monkeypatch, capsys):
    def interrupted(*args):
        time.sleep(0.2)
        raise KeyboardInterrupt

    monkeypatch.setattr(resplit, "run_one", interrupted)
    out = tmp_path / "bench"
    assert resplit.main(["--data-dir", str(data_dir), "--resplits", "1", "--out", str(out), "--", "train_bn.py"]) == 130
    walls = json.loads((out / "main" / "resplit-1.wall.json").read_text())["invocations"]
    assert [w["exit_code"] for w in walls] == [130] and walls[0]["wall_seconds"] >= 0.2
    assert "run the same command again to resume" in capsys.readouterr().err


def test_the_run_hears_ctrl_c_even_where_the_bench_ignores_it(tmp_path):
    (tmp_path / "probe.py").write_text("import signal, sys\n"
                                       "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under `nohup ... &`
    try:
        code, _ = resplit.run_one(tmp_path / "probe.py", [], tmp_path, 1, tmp_path / "out", tmp_path / "log")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 0 and (tmp_path / "log").read_text().splitlines()[-1] == "True"


class Child:
    """A run that ignores the first Ctrl-C (it is saving) and records what it was sent."""

    def __init__(self, interrupts):
        self.interrupts, self.events = list(interrupts), []

    def wait(self, timeout=None):
        self.events.append(("wait", timeout))
        if self.interrupts:
            raise self.interrupts.pop(0)
        return -9

    def send_signal(self, signum):
        self.events.append(("signal", signum))

    def kill(self):
        self.events.append(("kill", None))


TIMEOUT = subprocess.TimeoutExpired("run", 5)


@pytest.mark.parametrize("interrupts, signalled, killed", [
    # Ctrl-C; the run has not stopped after 5 s, is sent one itself, then stops
    ([KeyboardInterrupt, TIMEOUT], True, False),
    # Ctrl-C, then a second Ctrl-C while the run saves: it is killed at once
    ([KeyboardInterrupt, KeyboardInterrupt], False, True),
    # the same second Ctrl-C after the bench sent its own
    ([KeyboardInterrupt, TIMEOUT, KeyboardInterrupt], True, True),
])
def test_ctrl_c_lets_the_run_save_and_a_second_one_kills_it(interrupts, signalled, killed):
    child = Child(interrupts)
    with pytest.raises(KeyboardInterrupt):
        resplit.wait_for(child)
    assert (("signal", signal.SIGINT) in child.events) == signalled
    assert (("kill", None) in child.events) == killed
    assert child.events[-1] == (("wait", None) if killed else ("wait", 120))  # it has stopped


@pytest.mark.slow
def test_a_search_resplit_reads_the_searchs_score_and_final_test(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --out, and a relative --grid, from wherever the bench starts
    (tmp_path / "grid.json").write_text(json.dumps({"learning_rate": [1e-3, 2e-3]}))
    assert resplit.main(["--data-dir", str(data_dir), "--resplits", "1", "--first", "0", "--out", "bench", "--",
                         "tune_grid.py", *TINY, "--grid", "grid.json"]) == 0
    out = tmp_path / "bench"
    best = json.loads((out / "main" / "resplit-0" / "best.json").read_text())
    row = next(csv.DictReader((out / "resplits.csv").open()))
    assert (float(row["val_accuracy"]), float(row["test_accuracy"])) == (best["val_accuracy"], best["test_accuracy"])
    assert "canonical split (seed 0)" in (out / "resplits.txt").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--", "train_bn.py", "--seed", "3"], "--seed is set for each resplit"),
    (["--", "train_bn.py", "--out=x"], "--out is set for each resplit"),
    (["--", "nothing.py"], "give one of"),
    ([], "give one of"),
    (["--", "train_bn.py", "--epochs", "0"], "train_bn.py: epochs must be an integer >= 1"),
    (["--", "tune_grid.py", "--learning-rate", "1e-3:1e-2"], "a grid takes a comma list"),
    (["--vs", "tune_random.py --n-iter -1", "--", "train_bn.py"], "--n-iter"),
    (["--vs", "train_bn.py 'unclosed", "--", "train_bn.py"], "--vs"),
    (["--resplits", "0", "--", "train_bn.py"], "--resplits"),
    (["--data-dir", "", "--", "train_bn.py"], "--data-dir must name a folder"),
])
def test_bad_input_is_one_line_before_anything_runs(data_dir, tmp_path, capsys, argv, message):
    out = tmp_path / "b"
    full = ["--data-dir", str(data_dir), "--out", str(out), *argv]
    assert resplit.main(full) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists(), "nothing written"


def test_a_missing_data_folder_and_a_file_as_out_are_refused(data_dir, tmp_path, capsys):
    assert resplit.main(["--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "b"), "--", "train_bn.py"]) == 2
    assert "data folder not found" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert resplit.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "file"), "--", "train_bn.py"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("held, message", [
    (json.dumps(["train_bn.py", "--epochs", "3"]), "holds the runs of another command"),
    ("{not json", "is not this bench's record of a command"),
])
def test_an_out_folder_of_another_command_is_refused(data_dir, tmp_path, capsys, held, message):
    out = tmp_path / "b"
    (out / "main").mkdir(parents=True)
    (out / "main" / "command.json").write_text(held)
    assert resplit.main(["--data-dir", str(data_dir), "--out", str(out), "--", "train_bn.py"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_out_inside_the_data_folder_is_refused(data_dir, capsys):
    assert resplit.main(["--data-dir", str(data_dir), "--out", str(data_dir / "bench"), "--", "train_bn.py"]) == 2
    assert "lies in the data folder" in capsys.readouterr().err
    assert not (data_dir / "bench").exists()


def test_the_sign_test_and_the_interval_of_paired_differences():
    positive, negative, p, coverage = resplit.sign_test([0.02, 0.01, 0.03, -0.01, 0.0])
    assert (positive, negative) == (3, 1)
    assert p == pytest.approx(0.625)  # 2 * P(X >= 3), X ~ Binomial(4, 1/2)
    assert coverage == pytest.approx(1 - 2 / 32)
    assert resplit.sign_test([0.01] * 5)[2] == pytest.approx(2 / 32)
    line = resplit.paired_line([0.02, 0.01, 0.03])
    assert "median +0.0200, range [+0.0100, +0.0300]" in line and "75% confidence" in line
    assert "3 untied pairs can give no less than 0.250" in line
    assert "2 untied pairs can give no less than 0.500" in resplit.paired_line([0.02, 0.0, 0.03])  # a tie counts not
