"""Successive halving (--halving) for tune_grid.py and tune_random.py: scikit-learn's
HalvingGridSearchCV / HalvingRandomSearchCV with training epochs as the resource.

Rung 0 trains every candidate for --min-epochs epochs; each later rung keeps the best
1/--factor of the previous one and trains them for --factor times as many epochs, up to
--epochs. Each rung retrains from scratch (scikit-learn has no warm start), so a configuration
reaching the top rung has cost min-epochs * (1 + factor + factor^2 + ...) epochs. Every
training goes to the trial store with its rung's epochs as a hyperparameter column, so a
search resumes mid-rung like any other (the store answers what is done, and the scores it
returns are exact, so scikit-learn promotes the same candidates again).
"""

import inspect
import math

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
    if getattr(args, "refine", 0):
        raise UsageError("--halving and --refine do not combine: halving already narrows the candidates")


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


def search_class(grid):
    """HalvingGridSearchCV or HalvingRandomSearchCV, checked to take a custom `resource`:
    scikit-learn pull request #34253 proposes dropping it, and then --halving cannot work."""
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401 - enables the import below
    from sklearn.model_selection import HalvingGridSearchCV, HalvingRandomSearchCV

    cls = HalvingGridSearchCV if grid else HalvingRandomSearchCV
    if "resource" not in inspect.signature(cls).parameters:
        import sklearn

        raise UsageError(f"--halving: scikit-learn {sklearn.__version__}'s {cls.__name__} takes no custom "
                         "resource (epochs); install a release that does (1.7 does)")
    return cls


def options(args, epochs):
    """The halving search's keyword arguments."""
    min_epochs, factor = settings(args)
    return {"resource": RESOURCE, "factor": factor, "min_resources": min_epochs, "max_resources": epochs,
            "aggressive_elimination": False}


def identity(args):
    return {"halving": list(settings(args))} if args.halving else {}
