"""How a trial's per-epoch validation curve becomes the one number a search ranks it by (--score).

    best-epoch  the best epoch's validation accuracy. A maximum over noisy epochs: on 133 images
                a BN model's accuracy swings by points from one epoch to the next, and the
                maximum rewards the configuration whose curve swung highest once.
    last-5      the mean validation accuracy over the last 5 epochs the trial ran: where the
                trained model ends up, averaged over 5 readings of the same images. With early
                stopping these are the epochs after its best.

bench/selection.py measures which one picks better configurations (docs/tuning.md,
"How a configuration is scored"; docs/accuracy.md, "Choosing the trial score").
"""

import math

LAST = 5  # epochs "last-5" averages over
SCORES = ("best-epoch", f"last-{LAST}")
DEFAULT = "best-epoch"  # bench/selection.py found no better score: docs/accuracy.md, "Choosing the trial score"


def _finite(values):
    return [v for v in values if v is not None and math.isfinite(v)]


def best_epoch(history):
    return max(_finite(history.get("val_accuracy", [])), default=math.nan)


def last_epochs(history, n=LAST):
    values = history.get("val_accuracy", [])[-n:]
    return sum(values) / len(values) if values and len(_finite(values)) == len(values) else math.nan


SCORE_OF = {"best-epoch": best_epoch, f"last-{LAST}": last_epochs}


def describe(how):
    return {"best-epoch": "the best epoch's validation accuracy",
            f"last-{LAST}": f"the mean validation accuracy over a trial's last {LAST} epochs"}[how]


def score(history, how):
    """The score `how` (one of SCORES) of a training's history: NaN without validation epochs."""
    return SCORE_OF[how](history or {})
