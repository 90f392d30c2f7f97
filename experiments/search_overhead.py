"""Benchmark (not a test): what the search machinery costs on top of training.

Runs tune_random.py's search (beans_tune.scripts.tune_random, in this process) on the real data
and prints the search's wall time / the sum of its trials' own fit times (target <= 1.02). The
remainder is model building, scoring, scikit-learn's bookkeeping and the trial log.

    python experiments/search_overhead.py --data-dir ../shared/beans --n-iter 8
"""

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

from beans_tune import outputs
from beans_tune.scripts import tune_random

import shared  # experiments/shared.py, found beside the experiment it runs


def read_rows(path):
    """results.csv as dicts, fit_seconds as a number (the columns this bench reads)."""
    with open(path) as handle:
        return [{**row, "fit_seconds": float(row["fit_seconds"])} for row in csv.DictReader(handle)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n-iter", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        # patience = epochs: every trial trains the same number of epochs, as in the
        # KerasTuner figure quoted in the issue (8 trials x 10 epochs at 64x64)
        code = tune_random([*(["--data-dir", args.data_dir] if args.data_dir else []),
                                 "--n-iter", str(args.n_iter), "--epochs", str(args.epochs),
                                 "--patience", str(args.epochs), "--image-size", str(args.image_size),
                                 "--out", str(out), *shared.untuned_training_flags()])
        if code:
            sys.exit(code)
        rows = read_rows(out / "results.csv")
        search = json.loads((out / "best.json").read_text())["search_seconds"]
    fits = sum(r["fit_seconds"] for r in rows)
    print()
    print(outputs.format_table(["trials", "search wall s", "sum of fit s", "search / fits", "target"],
                              [[len(rows), f"{search:.1f}", f"{fits:.1f}", f"{search / fits:.3f}", "<= 1.02"]]))


if __name__ == "__main__":
    main()
