"""experiments/glance.py: the README's results figure reads experiments/resplit.py's CSVs, merges them by
resplit, keeps the canonical split out of the medians and refuses two readings of one resplit."""

import importlib.util

from conftest import ROOT

spec = importlib.util.spec_from_file_location("glance", ROOT / "experiments" / "glance.py")
glance = importlib.util.module_from_spec(spec)
spec.loader.exec_module(glance)

HEADER = ("resplit,seed,val_accuracy,test_accuracy,wall_seconds,"
          "vs_val_accuracy,vs_test_accuracy,vs_wall_seconds,test_difference")


def write(path, rows):
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_medians_per_group_and_the_figure(tmp_path, capsys):
    search = write(tmp_path / "a.csv", ["0,0,0.9,0.96,1,0.9,0.86,1,0.1",
                                        "6,6,0.9,0.95,1,0.9,0.90,1,0.05",
                                        "7,7,0.9,0.88,1,0.9,0.85,1,0.03"])
    earlier = write(tmp_path / "b.csv", ["1,1,0.9,0.84,1,0.9,0.79,1,0.05", "8,8,0.9,,,0.9,0.87,1,"])
    out = tmp_path / "glance.png"
    code = glance.main([f"search={search}", f"search={earlier}", f"bn={search}:vs", f"bn={earlier}:vs",
                        "--note", "baseline=not run on resplits", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and out.stat().st_size > 0
    # two fresh resplits: the median is their mean; resplit 8's empty test accuracy is left out
    assert "search: resplits 6-7: test 0.9150 [0.8800-0.9500]" in printed
    assert "search: resplit 1: test 0.8400" in printed
    assert "search: canonical split: test 0.9600" in printed
    assert "bn: resplits 6-8: test 0.8700 [0.8500-0.9000]" in printed


def test_a_resplit_read_twice_must_agree(tmp_path, capsys):
    one = write(tmp_path / "a.csv", ["6,6,0.9,0.95,1,,,,"])
    other = write(tmp_path / "b.csv", ["6,6,0.9,0.94,1,,,,"])
    assert glance.main([f"x={one}", f"x={other}", "--out", str(tmp_path / "g.png")]) == 2
    assert "resplit 6 reads" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()


def test_bad_specs_are_refused(tmp_path, capsys):
    csv_without_vs = tmp_path / "plain.csv"
    csv_without_vs.write_text("resplit,seed,val_accuracy,test_accuracy,wall_seconds\n1,1,0.9,0.9,1\n")
    for spec in ["no-equals-sign", f"x={csv_without_vs}:vs", f"x={tmp_path / 'missing.csv'}"]:
        assert glance.main([spec, "--out", str(tmp_path / "g.png")]) == 2
    assert glance.main([f"x={csv_without_vs}", "--order", "y", "--out", str(tmp_path / "g.png")]) == 2
    assert capsys.readouterr().err.count("glance.py: error:") == 4


def test_the_markdown_table_lines_up_each_resplit_and_says_what_did_not_run(tmp_path, capsys):
    search = write(tmp_path / "a.csv", ["11,11,0.9,0.9375,1,0.9,0.8828,1,0.05",
                                        "12,12,0.9,0.9375,1,0.9,0.9453,1,-0.01",
                                        "13,13,0.9,nan,1,0.9,0.8984,1,"])
    older = write(tmp_path / "b.csv", ["6,6,0.9,0.95,1,,,,"])
    assert glance.main([f"five={search}", f"cosine={search}:vs", f"grid={older}", "--note", "bayes=running",
                        "--note", "cosine=the former default", "--fresh-from", "11", "--markdown",
                        "--order", "grid,five,cosine,bayes", "--out", str(tmp_path / "g.png")]) == 0
    table = capsys.readouterr().out.split("\nwrote ")[0].splitlines()
    assert table == [
        "| command | test accuracy, median [min-max] | resplit 11 | resplit 12 | resplit 13 |",
        "| --- | --- | --- | --- | --- |",
        "| `grid` | not run on resplits 11 and up | - | - | - |",   # resplit 6 is not among the fresh ones
        "| `five` | 0.9375 [0.9375-0.9375] | 0.9375 | 0.9375 | - |",  # resplit 13's NaN: no accuracy
        "| `cosine` | 0.8984 [0.8828-0.9453] (the former default) | 0.8828 | 0.9453 | 0.8984 |",
        "| `bayes` | running | - | - | - |"]


def test_an_order_naming_no_csv_or_note_is_refused(tmp_path, capsys):
    search = write(tmp_path / "a.csv", ["11,11,0.9,0.9375,1,,,,"])
    assert glance.main([f"five={search}", "--order", "five,fiev", "--out", str(tmp_path / "g.png")]) == 2
    assert "--order names fiev" in capsys.readouterr().err
