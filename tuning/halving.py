"""Successive halving (--halving) for tune_grid.py and tune_random.py, with training epochs as
the resource, run as scikit-learn's HalvingGridSearchCV / HalvingRandomSearchCV run it
(tests/test_halving.py holds the two side by side) but through the one evaluate path.

Rung 0 trains every candidate for --min-epochs epochs; each later rung keeps the best
1/--factor of the previous one and trains them for --factor times as many epochs, up to
--epochs. Each rung retrains from scratch, so a configuration reaching the top rung has cost
min-epochs * (1 + factor + factor^2 + ...) epochs. Every training goes to the trial store with
its rung's epochs as a hyperparameter column, so a search resumes mid-rung like any other (the
store answers what is done, and the scores it returns are exact, so the same candidates are
promoted again).
"""

import math

import numpy as np

import cli
from common import UsageError

RESOURCE = "epochs"


def add_flags(parser):
    parser.add_argument("--halving", action="store_true",
                        help="successive halving: rungs of growing epochs, the best 1/factor promoted")
    parser.add_argument("--min-epochs", type=cli.number(int, 1, 1000), default=None, metavar="N",
                        help="with --halving: epochs of the first rung (default: as many as lets the last rung "
                             "train close to --epochs, scikit-learn's 'exhaust'; range [1, 1000])")
    parser.add_argument("--factor", type=cli.number(int, 2, 100), default=None,
                        help="with --halving: candidates kept 1/factor and epochs times factor per rung "
                             f"(default: {FACTOR}, range [2, 100])")


FACTOR = 3


def settings(args):
    """(min epochs or "exhaust", factor) with their defaults. "exhaust" is scikit-learn's choice
    of the first rung's epochs that brings the last rung as close to --epochs as the factor
    allows: with a fixed first rung, few candidates would stop the search rungs below --epochs."""
    return args.min_epochs or "exhaust", args.factor or FACTOR


def first_rung(candidates, args, epochs):
    """The first rung's epochs, as scikit-learn resolves "exhaust" for a resource other than
    n_samples (starting from 1)."""
    min_epochs, factor = settings(args)
    if min_epochs != "exhaust":
        return min_epochs
    required = 1 + math.floor(math.log(candidates, factor))
    return max(1, epochs // factor ** (required - 1))


def rung(args):
    """The hyperparameter a rung sets, or None without --halving."""
    return RESOURCE if args.halving else None


def check(args, dims, base):
    """--halving's own flags against the rest: one line, before any work."""
    if not args.halving:
        if args.min_epochs is not None or args.factor is not None:
            raise UsageError("--min-epochs and --factor go with --halving")
        return
    if any(d.name == RESOURCE for d in dims):
        raise UsageError("--halving sets the epochs of each rung: give --epochs one value (the top rung's)")
    if args.min_epochs and args.min_epochs > base.epochs:
        raise UsageError(f"--min-epochs {args.min_epochs} is above --epochs {base.epochs} (the top rung)")


def schedule(candidates, args, epochs):
    """[(rung epochs, candidates trained)] as scikit-learn's halving runs it (not aggressive)."""
    factor = settings(args)[1]
    min_epochs = first_rung(candidates, args, epochs)
    required = 1 + math.floor(math.log(candidates, factor))
    possible = 1 + math.floor(math.log(epochs // min_epochs, factor))
    rungs, n = [], candidates
    for i in range(min(required, possible)):
        rungs.append((min(min_epochs * factor ** i, epochs), n))
        n = math.ceil(n / factor)
    return rungs


def trainings(candidates, args, epochs):
    """How many trainings the schedule runs (per fold)."""
    return sum(n for _, n in schedule(candidates, args, epochs))


def search(problem, candidates, args, epochs):
    """Runs the rungs over `candidates` (the first rung's); each rung's best 1/factor, ranked by
    their mean score over folds, go on, in scikit-learn's order (its _top_k: ascending score,
    failed candidates first, the last k kept)."""
    from .evaluate import score
    from .searches import SearchOutput

    candidates = list(candidates)
    factor = settings(args)[1]
    for rung_epochs, _ in schedule(len(candidates), args, epochs):
        rows = problem.evaluate([{**c, RESOURCE: rung_epochs} for c in candidates])
        per = len(rows) // len(candidates)  # folds per candidate
        scores = np.array([score(rows[i * per:(i + 1) * per]) for i in range(len(candidates))])
        order = np.roll(np.argsort(scores), np.count_nonzero(np.isnan(scores)))
        candidates = [candidates[i] for i in order[-math.ceil(len(candidates) / factor):]]
    return SearchOutput()


def identity(args):
    return {"halving": list(settings(args))} if args.halving else {}
