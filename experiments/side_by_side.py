"""The searches side by side: one row per finished search folder, read from its best.json.

    python experiments/side_by_side.py runs/tune_grid-... runs/tune_random-... runs/tune_bayes-...

Columns: the method (with --halving, --refine or --cv where the search had them), its best
configuration, that configuration's validation accuracy in the search, the final model's test
accuracy with its standard error over the test images, the trainings the search ran, and its
wall time (the search and the final model). One search on one
split: a difference of less than about two standard errors between two rows is noise (the
median over resplits is experiments/resplit.py's). No TensorFlow; instant.
"""

import argparse
import json
import sys
from pathlib import Path

from beans_tune import outputs
from beans_tune.tuning.report import duration
from beans_tune.tuning.space import fmt

HEADERS = ["method", "best parameters", "val_accuracy", "test_accuracy ± se", "trainings", "wall time"]


def variant(folder):
    """The flags that change a method, as the user typed them (' --halving', ' --refine 1', ' --cv 5'),
    from the folder's search.json; none where it has none."""
    try:
        method = json.loads((folder / "search.json").read_text()).get("method", {})
    except (OSError, ValueError, AttributeError):
        return ""
    if not isinstance(method, dict):
        return ""
    words = [" --halving" if method.get("halving") else "",
             f" --refine {method['refine']}" if method.get("refine") else "",
             f" --cv {method['cv']}" if method.get("cv") else ""]
    return "".join(words)


def row(folder):
    path = Path(folder) if Path(folder).name == "best.json" else Path(folder) / "best.json"
    try:
        best = json.loads(path.read_text())
        seconds = best["search_seconds"] + best.get("final_seconds", float("nan"))
        return [f"{best['script']}.py{variant(path.parent)}", " ".join(f"{k}={fmt(v)}" for k, v in best["params"].items()),
                f"{best['val_accuracy']:.4f}", outputs.accuracy_with_se(best["test_accuracy"], best["test_images"]),
                best["trainings"], duration(seconds) if seconds == seconds else "-"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SystemExit(f"side_by_side.py: error: {path}: not a finished search's best.json "
                         f"({type(err).__name__}: {err})") from None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="side_by_side.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", metavar="OUT", help="a search's --out folder")
    args = parser.parse_args(argv)
    try:
        rows = [row(folder) for folder in args.folders]
    except SystemExit as err:
        print(err, file=sys.stderr)
        return 2
    print(outputs.format_table(HEADERS, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
