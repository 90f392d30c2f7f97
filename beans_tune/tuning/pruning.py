"""Pruning (--prune): a trial that falls behind the finished ones stops, epoch by epoch.

The rule is Optuna's MedianPruner: after `WARMUP_EPOCHS` epochs, and once `STARTUP_TRIALS`
trials have finished, a training stops at the end of an epoch where its best
validation accuracy so far is below the median of the finished trials' validation accuracy at
that same epoch. Finished means run to its end (status "ok"); a pruned trial's curve is no
reference, as in Optuna. The stopped training is stored as "pruned" with its epochs and its
score so far (tuning.store); it is never trained again on resume.

The driver (tuning.evaluate) keeps a `Pruner` of the finished curves and hands each training a
`Bar`, the medians as they stand when it is handed out: in this process, of every trial finished
before it; in parallel (--n-jobs, --scheduler), of those stored by then, so which trials are
pruned depends on timing and a rerun need not prune the same ones. Scored on the validation
split only: with --cv or --repeats a candidate's score is over folds or seeds, and a fold
stopped early would leave the rest of its candidate's trainings without a score to finish.

Why these numbers: docs/tuning.md, "Pruning". In short, on beans' 133 validation images one
epoch's score swings by 0.1 and more and the best epoch often comes late; the warm-up and the
startup trials were chosen on the curves of six stored searches (experiments/pruning.py) as the
least aggressive rule that kept the winner in all six.
"""

import math
import statistics
import threading
from dataclasses import dataclass

STARTUP_TRIALS = 4   # trials that finish before any is stopped (half the default 8)
WARMUP_EPOCHS = 4    # epochs every training runs before it can be stopped


@dataclass(frozen=True)
class Bar:
    """What one training is held to: the finished trials' median validation accuracy at each
    epoch (NaN where none ran that far), and the epochs it runs before it can be stopped."""

    medians: tuple
    warmup: int = WARMUP_EPOCHS
    finished: int = 0    # the finished trials the medians are taken over

    def stops(self, epoch, best, epochs):
        """Whether a training of `epochs` epochs whose best validation accuracy after `epoch`
        (counted from 1) is `best` stops here. Never at its last epoch: that saves nothing and
        would cost it its score."""
        if epoch <= self.warmup or epoch >= epochs or epoch > len(self.medians):
            return False
        median = self.medians[epoch - 1]
        return math.isfinite(median) and best < median

    def why(self, epoch, best):
        """The stored message of a training stopped at `epoch`."""
        return f"epoch {epoch}: {best:.4f} < median {self.medians[epoch - 1]:.4f}"


def medians(curves):
    """Per epoch, the median of the `curves` (lists of per-epoch validation accuracy) that reach
    it; NaN where none does."""
    longest = max((len(c) for c in curves), default=0)
    found = []
    for epoch in range(longest):
        values = [c[epoch] for c in curves if len(c) > epoch and math.isfinite(c[epoch])]
        found.append(statistics.median(values) if values else math.nan)
    return tuple(found)


class Pruner:
    """The finished trials' curves, as the store holds them; `bar()` what a training handed out
    now is held to, None before STARTUP_TRIALS have finished."""

    def __init__(self, rows=(), histories=None, startup=STARTUP_TRIALS, warmup=WARMUP_EPOCHS):
        self.startup, self.warmup = startup, warmup
        self.curves, self.lock = [], threading.Lock()  # joblib hands trainings out from its own thread
        histories = histories or {}
        for row in rows:
            self.add(row, histories.get(int(row.get("trial", 0) or 0), {}))

    def add(self, row, history):
        """Counts a stored training: a finished one ("ok") with its curve."""
        curve = (history or {}).get("val_accuracy")
        if row["status"] == "ok" and curve:
            with self.lock:
                self.curves.append([float(v) for v in curve])

    def bar(self):
        with self.lock:
            finished = list(self.curves)
        if len(finished) < self.startup:
            return None
        return Bar(medians(finished), self.warmup, len(finished))


def describe():
    """The rule, as the configuration lines show it."""
    return (f"a trial stops after epoch {WARMUP_EPOCHS} or later when its best validation accuracy is below the "
            f"median of the finished trials' at that epoch, once {STARTUP_TRIALS} have finished")
