"""Which hyperparameters matter in search folders' trials (beans_tune.tuning.importance), one
table per folder, or one over several folders of the same space (--pool: one command on several
resplits), each folder's scores centred on its own mean.

    python experiments/importance.py runs/tune_random-a runs/tune_random-b --pool
"""

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np

from beans_tune.hparams import UsageError
from beans_tune.tuning import store
from beans_tune.tuning.importance import first_rung, report
from beans_tune.tuning.space import Dim


def dims_of(space):
    """The searched dimensions from a search.json's "space"."""
    return [Dim(name, choices=tuple(spec["choices"])) if "choices" in spec else
            Dim(name, low=spec["low"], high=spec["high"]) for name, spec in space.items()]


def read_search(folder):
    """(trials, dims, validation images, rung) of a search folder; UsageError when unreadable."""
    try:
        manifest = json.loads((folder / store.MANIFEST).read_text())
        held = store.stored(folder / store.RESULTS)
        best = folder / store.BEST
        images = json.loads(best.read_text()).get("validation_images") if best.exists() else None
        dims = dims_of(manifest["space"])
        found = held.trials()
        missing = [d.name for d in dims if d.name not in held.names]
        if missing:
            raise ValueError(f"{store.RESULTS} has no column for {', '.join(missing)}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        why = f"{err.__class__.__name__}: {err}" if isinstance(err, (KeyError, TypeError, AttributeError)) else err
        raise UsageError(f"cannot read a search in {folder}: {why}") from None
    halving = manifest.get("method", {}).get("halving") if isinstance(manifest.get("method"), dict) else None
    return found, dims, images, "epochs" if halving else None


def centred(searches):
    """The scored trials of several searches as one set, each search's scores moved by the
    difference between its mean and the mean of all: searches of one space on other splits
    pooled, each split's own level taken out, each score's noise kept."""
    scored = [[t for t in found if t.status == store.OK and math.isfinite(t.val_accuracy)] for found in searches]
    means = [float(np.mean([t.val_accuracy for t in group])) for group in scored if group]
    overall = float(np.mean(means)) if means else 0.0
    return [dataclasses.replace(t, val_accuracy=t.val_accuracy - float(np.mean([u.val_accuracy for u in group])) + overall)
            for group in scored for t in group]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="experiments/importance.py",
                                     description="Which hyperparameters matter in a search folder's trials.")
    parser.add_argument("folders", nargs="+", type=Path, help="search output folders (results.csv, search.json)")
    parser.add_argument("--pool", action="store_true",
                        help="one table over all the folders (the same space, e.g. one command on several "
                             "resplits), each folder's scores centred on its own mean")
    args = parser.parse_args(argv)
    try:
        if args.pool and len({f.resolve() for f in args.folders}) < len(args.folders):
            raise UsageError("--pool got a folder twice; each search counts once")
        searches = [read_search(folder) for folder in args.folders]
        spaces = [[(d.name, d.spec()) for d in dims] for _, dims, _, _ in searches]
        if args.pool and any(space != spaces[0] for space in spaces):
            raise UsageError("--pool takes searches of one space; these folders searched different ones")
    except UsageError as err:
        print(f"importance: {err}", file=sys.stderr)
        return 2
    if args.pool:
        trials = centred([first_rung(found, rung) for found, _, _, rung in searches])
        images = min((s[2] for s in searches if s[2]), default=None)
        empty = sum(not any(t.status == store.OK for t in found) for found, _, _, _ in searches)
        print(f"{len(searches) - empty} searches pooled, each centred on its own mean"
              + (f" ({empty} with no scored trial left out)" if empty else "") + ":")
        print(report(trials, searches[0][1], images) or "nothing to say: too few trials")
        return 0
    for folder, (found, dims, images, rung) in zip(args.folders, searches):
        print(f"{folder}:")
        print(report(found, dims, images, rung) or "nothing to say: too few trials")
    return 0


if __name__ == "__main__":
    sys.exit(main())
