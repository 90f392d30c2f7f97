"""Benchmark (not a test): what --prune would have done to finished searches, replayed on their
stored curves, for the rule's startup trials and warm-up epochs.

    python experiments/pruning.py runs/grid runs/random ... [--startup 2,3,4] [--warmup 2,4,6]

A training is deterministic on one machine, so a pruned training's curve is the unpruned one cut
short, and for a grid or random search (whose candidates do not depend on the scores) the replay
is the pruned search: the same trials in the same order, each held to the medians of the trials
finished before it (beans_tune.tuning.pruning, the rule --prune applies). A Bayesian search's
later proposals would change; its replay is only indicative. Per rule: the epochs trained, the
share saved, the searches whose best trial would have been pruned, and the largest loss of best
validation accuracy. Reads results.csv and histories.jsonl; trains nothing.
"""

import argparse
import sys
from pathlib import Path

from beans_tune import cli, outputs
from beans_tune.hparams import UsageError
from beans_tune.tuning import pruning, store


def curves(folder):
    """[(row, its validation curve)] of a search folder, in trial order."""
    trials = store.stored(Path(folder) / store.RESULTS)
    histories = trials.histories()
    found = [(row, histories.get(int(row["trial"]), {}).get("val_accuracy")) for row in trials.rows()]
    if any(curve is None for _, curve in found):
        raise UsageError(f"{folder}: a trial has no curve in {store.HISTORIES}")
    if any(row["status"] == store.PRUNED or row["fold"] != "validation" for row, _ in found):
        raise UsageError(f"{folder}: replay a search scored on the validation split and run without --prune")
    return found


def replay(found, startup, warmup):
    """[(epochs trained, best so far, pruned?)] of each trial under the rule."""
    pruner, result = pruning.Pruner(startup=startup, warmup=warmup), []
    for row, curve in found:
        bar, best, stop = pruner.bar(), -1.0, None
        for epoch, value in enumerate(curve, 1):
            best = max(best, value)
            if bar is not None and bar.stops(epoch, best, len(curve)):
                stop = epoch
                break
        if stop is None:
            pruner.add(row, {"val_accuracy": curve})
            result.append((len(curve), max(curve), False))
        else:
            result.append((stop, best, True))
    return result


def numbers(text):
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None


def run(argv):
    parser = argparse.ArgumentParser(prog="pruning.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="finished search folders (results.csv, histories.jsonl)")
    parser.add_argument("--startup", type=numbers, default=[pruning.STARTUP_TRIALS])
    parser.add_argument("--warmup", type=numbers, default=[pruning.WARMUP_EPOCHS])
    args = parser.parse_args(argv)
    searches = {folder: curves(folder) for folder in args.folders}
    rows = []
    for startup in args.startup:
        for warmup in args.warmup:
            trained = full = lost = 0
            drops = []
            for found in searches.values():
                result = replay(found, startup, warmup)
                trained += sum(epochs for epochs, _, _ in result)
                full += sum(len(curve) for _, curve in found)
                scored = [i for i, (row, _) in enumerate(found) if row["status"] == store.OK]
                best = max(scored, key=lambda i: max(found[i][1]))
                lost += result[best][2]
                kept = [result[i][1] for i in scored if not result[i][2]]
                drops.append(max(found[best][1]) - max(kept))
            rows.append([startup, warmup, f"{trained}/{full}", f"{1 - trained / full:.0%}",
                         f"{lost}/{len(searches)}", f"{max(drops):.4f}"])
    print(outputs.format_table(["startup trials", "warm-up epochs", "epochs trained", "saved",
                                "best trial pruned", "largest val loss"], rows))
    for folder, found in searches.items():
        result = replay(found, args.startup[0], args.warmup[0])
        print(f"\n{folder} (startup {args.startup[0]}, warm-up {args.warmup[0]}): "
              + " ".join(f"{e}{'p' if p else ''}" for e, _, p in result) + "  (epochs of each trial, p: pruned)")


def main(argv=None):
    return cli.run_cli(run, argv, "pruning.py")


if __name__ == "__main__":
    sys.exit(main())
