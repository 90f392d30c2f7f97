"""Successive halving (--halving) for tune_grid.py and tune_random.py, with training epochs as
the resource, run as scikit-learn's HalvingGridSearchCV / HalvingRandomSearchCV run it
(tests/test_halving.py holds the two side by side) but through the one evaluate path.

Rung 0 trains every candidate for --min-epochs epochs; each later rung keeps the best
1/--factor of the previous one and trains them for --factor times as many epochs, up to
--epochs. By default a promoted configuration continues: it resumes from the weights and
optimizer state its last rung ended with (saved in the search's checkpoints/ folder) and trains
only the extra epochs, with its learning-rate schedule spread over the top rung's epochs, so
that each rung is a prefix of one full training (as KerasTuner's Hyperband and the ASHA
schedulers of Optuna and Ray Tune continue theirs). A configuration reaching the top rung has
then cost --epochs epochs. With --restart-rungs each rung retrains from scratch, as
scikit-learn's halving does: min-epochs * (1 + factor + factor^2 + ...) epochs.

Every training goes to the trial store with its rung's epochs as a hyperparameter column and
the epochs it ran as `epochs_run`, so a search resumes mid-rung like any other (the store
answers what is done, and the scores it returns are exact, so the same candidates are promoted
again; the saved states of the rung below are still there). States no later rung can need are
removed as each rung ends, and the folder once the search is done.
"""

import math

import numpy as np

from .. import cli
from ..hparams import UsageError
from .evaluate import Continue, score
from .searches import SearchOutput

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
    parser.add_argument("--restart-rungs", action="store_true",
                        help="with --halving: each rung trains from scratch, as scikit-learn's halving does "
                             "(default: a promoted configuration continues from where its last rung ended)")


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
        if args.min_epochs is not None or args.factor is not None or args.restart_rungs:
            raise UsageError("--min-epochs, --factor and --restart-rungs go with --halving")
        return
    if args.prune:
        raise UsageError("--prune and --halving each stop trainings early, by their own rule: choose one")
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


def epochs(candidates, args, epochs):
    """How many epochs the schedule trains (per fold): a continuing configuration trains only the
    epochs its rung adds to the rung below."""
    total, below = 0, 0
    for rung_epochs, n in schedule(candidates, args, epochs):
        total += n * (rung_epochs - below)
        below = rung_epochs if continues(args) else 0
    return total


def continues(args):
    return bool(args.halving and not args.restart_rungs)


def search(problem, candidates, args, epochs):
    """Runs the rungs over `candidates` (the first rung's); each rung's best 1/factor, ranked by
    their mean score over folds, go on, in scikit-learn's order (its _top_k: ascending score,
    failed candidates first, the last k kept). Continuing (the default), each rung's trainings
    start from the rung below's saved states and save their own for the rung above."""
    candidates = list(candidates)
    factor = settings(args)[1]
    rungs = schedule(len(candidates), args, epochs)
    horizon = rungs[-1][0]  # the top rung's epochs: below --epochs when the candidates run out first
    below = None
    for i, (rung_epochs, _) in enumerate(rungs):
        top = i == len(rungs) - 1
        proceed = Continue({RESOURCE: below} if below else None, horizon, keep=not top) if continues(args) else None
        rung = [{**c, RESOURCE: rung_epochs} for c in candidates]
        rows = problem.evaluate(rung) if proceed is None else problem.evaluate(rung, proceed)
        per = len(rows) // len(candidates)  # folds per candidate
        scores = np.array([score(rows[i * per:(i + 1) * per]) for i in range(len(candidates))])
        order = np.roll(np.argsort(scores), np.count_nonzero(np.isnan(scores)))
        promoted = [candidates[i] for i in order[-math.ceil(len(candidates) / factor):]]
        if proceed is not None:  # states no later rung can need: the rung below's, and the dropped candidates'
            problem.evaluate.drop_states(None if top else [
                *([{**c, RESOURCE: below} for c in candidates] if below else []),
                *[{**c, RESOURCE: rung_epochs} for c in candidates if c not in promoted]])
        candidates, below = promoted, rung_epochs
    return SearchOutput()


def identity(args):
    """What the manifest records of halving: its settings, and whether a promoted training continues."""
    if not args.halving:
        return {}
    return {"halving": [*settings(args), *([] if args.restart_rungs else ["continue"])]}
