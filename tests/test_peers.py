"""experiments/pruning.py replays --prune on a finished search's curves and gets the pruned
search; experiments/peers.py reads our searches' resplit folders into its table and figure, and
runs the peer tools where they are installed."""

import dataclasses
import json

import pytest

import tune_grid
import tune_random
from conftest import load_experiment, make_image_folder
from test_pruning import SIX, curves, rows


replay_bench = load_experiment("pruning")
load_experiment("resplit")
peers = load_experiment("peers")


def test_the_replay_of_an_unpruned_search_is_the_pruned_search(data_dir, tmp_path, monkeypatch, capsys):
    curves(monkeypatch)
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "full"), *SIX]) == 0
    assert tune_grid.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "pruned"), "--prune", *SIX]) == 0
    replayed = replay_bench.replay(replay_bench.curves(tmp_path / "full"), 4, 4)
    pruned = rows(tmp_path / "pruned")
    assert [(e, p) for e, _, p in replayed] == [(int(r["epochs"]), r["status"] == "pruned") for r in pruned]
    assert [b for _, b, _ in replayed] == pytest.approx([float(r["val_accuracy"]) for r in pruned])
    capsys.readouterr()
    assert replay_bench.main([str(tmp_path / "full"), "--startup", "4,5", "--warmup", "4"]) == 0
    table = capsys.readouterr().out
    lines = [line.split() for line in table.splitlines()]
    assert ["4", "4", "42/48", "12%", "0/1", "0.0000"] in lines  # 2 trials stop at epoch 5 of 8
    assert ["5", "4", "45/48", "6%", "0/1", "0.0000"] in lines  # 5 startup trials of 6: one left to stop


def test_the_replay_refuses_a_folder_without_curves_in_one_line(tmp_path, capsys):
    assert replay_bench.main([str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_peers_reads_our_searches_from_their_resplit_folders(data_dir, tmp_path, monkeypatch, capsys):
    bench = tmp_path / "bench" / "main"
    curves(monkeypatch)
    argv = [{"6,5,4,3,2,1": "1:6", "10": "8:64"}.get(a, a) for a in SIX]
    assert tune_random.main(["--data-dir", str(data_dir), "--out", str(bench / "resplit-11"), "--prune",
                             "--n-iter", "6", *argv]) == 0
    (bench / "resplit-11.wall.json").write_text(json.dumps({"invocations": [{"wall_seconds": 90.0, "exit_code": 0}]}))
    found = peers.read_ours("ours", bench, 11)
    stored = rows(bench / "resplit-11")
    assert found["epochs"] == sum(int(r["epochs"]) for r in stored) < 6 * 8  # pruned trials count their epochs
    assert len(found["curve"]) == found["epochs"] and found["wall_seconds"] == 90.0
    assert peers.read_ours("ours", bench, 12) is None
    text = peers.table({"ours": [found, None]}, [11, 12])
    assert "ours" in text and f"{found['test_accuracy']:.4f}" in text
    peers.figure({"ours": [found, None]}, tmp_path / "peers.png")
    assert (tmp_path / "peers.png").stat().st_size > 0


@pytest.mark.slow
def test_each_peer_tool_searches_retrains_its_pick_and_writes_its_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("keras_tuner")
    pytest.importorskip("optuna_integration")
    from beans_tune import images
    from beans_tune.tuning.final import FinalBudget

    data = make_image_folder(tmp_path / "beans", per_class=6, size=16)
    monkeypatch.setattr(peers, "TRIALS", 2)
    monkeypatch.setattr(peers, "EPOCHS", 2)
    monkeypatch.setattr(peers, "BASE", dataclasses.replace(peers.BASE, epochs=2, patience=2))
    monkeypatch.setattr(peers, "FINAL", FinalBudget(epochs=1, patience=1, cosine_to_end=True, data="auto"))
    real = images.Beans.__init__
    monkeypatch.setattr(images.Beans, "__init__", lambda self, *a, **k: real(self, *a, **{**k, "image_size": 16}))
    out = tmp_path / "out"
    assert peers.main(["--data-dir", str(data), "--resplits", "1", "--first", "1", "--out", str(out),
                       "--methods", ",".join(peers.METHODS)]) == 0
    for method in peers.METHODS:
        run = json.loads((out / method / "resplit-1.json").read_text())
        assert set(run["params"]) == {"learning_rate", "layers", "units", "decay", "batch_size"}
        assert 0 <= run["test_accuracy"] <= 1 and run["epochs"] == len(run["curve"]) > 0
    assert (out / "peers.png").exists() and "kt-hyperband" in (out / "peers.txt").read_text()
    assert peers.main(["--data-dir", str(data), "--out", str(out), "--methods", "nope"]) == 2
