"""Which hyperparameters matter, from a search's own trials: how much of the spread of the
validation scores each searched hyperparameter accounts for, one at a time, and whether that
stands out from chance and from the scores' noise.

For each hyperparameter the trials are grouped by its value (a range with more than 3 values
sampled: by thirds of its sampled values, lowest to highest), and its share is the part of the
scores' variance that the groups' mean scores explain (the one-way ANOVA's eta squared). Two
yardsticks sit beside it:

- chance: grouping N scores into K groups at random explains (K - 1) / (N - 1) of their
  variance on average, so a share near that says nothing;
- noise: the spread between the best and the worst group's mean score against two standard
  errors of that difference, from each score's own standard error (tuning.report).

Shares are one hyperparameter at a time, so they need not add up to 1: where the trials'
values are correlated (random samples by chance, Bayesian ones by design), one hyperparameter's
share can borrow from another's. With successive halving, the first rung's trials are read: all
candidates, at one budget.

A finished search prints the table again when its command is run again; experiments/importance.py
prints it for several folders, pooled.
"""

import math
from dataclasses import dataclass

import numpy as np

from .. import outputs
from . import store
from .report import standard_error
from .space import fmt, plain

GROUPS = 3  # a range sampled at more values is cut into thirds
FEW = 10    # below this many trials, the shares are rough
ALPHA = 0.05  # the F test's p below which a hyperparameter can stand out


@dataclass(frozen=True)
class Effect:
    """One hyperparameter's share of the scores' spread."""

    name: str
    groups: tuple        # the groups' labels, lowest value first
    counts: tuple        # trials per group
    means: tuple         # the groups' mean scores
    share: float         # eta squared: variance of the scores explained by the group means
    chance: float        # (K - 1) / (N - 1): what random groups would explain on average
    spread: float        # best group's mean minus worst group's
    noise: float         # two standard errors of that difference (NaN without a score count)
    thirds: bool = False  # groups are thirds of a range's sampled values, not its values
    p: float = math.nan  # one-way ANOVA's F test: how often groups this far apart arise by chance

    @property
    def best(self):
        return self.groups[int(np.argmax(self.means))] if self.spread > 0 else "-"

    @property
    def reading(self):
        """"stands out" only when the F test says the groups differ (p < 0.05: the trials' own
        spread within each group, seeds and other hyperparameters included, as the yardstick)
        and the best and worst group lie more than 2 standard errors of the validation images
        apart."""
        if math.isfinite(self.noise) and self.spread <= self.noise:
            return "within noise"
        if not (self.p < ALPHA):
            return "like chance"
        return "stands out"


def _groups(values, dim):
    """Group index of each trial's value, and the groups' labels (lowest first)."""
    distinct = sorted(set(values), key=_order)
    if len(distinct) <= GROUPS or not dim.is_range:
        index = {v: i for i, v in enumerate(distinct)}
        return [index[v] for v in values], tuple(fmt(v) for v in distinct), False
    ordered = sorted(values, key=_order)
    first = {}
    for rank, v in enumerate(ordered):  # a value's bin: where its first copy falls, so ties share one
        first.setdefault(v, rank * GROUPS // len(values))
    used = sorted(set(first.values()))
    bins = [used.index(first[v]) for v in values]
    labels = []
    for g in range(len(used)):
        members = sorted((v for v, b in zip(values, bins) if b == g), key=_order)
        labels.append(f"{fmt(members[0])}-{fmt(members[-1])}")
    return bins, tuple(labels), True


def _order(value):
    return (0, float(value)) if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) \
        else (1, str(value))


def effects(trials, dims, images=None, rung=None):
    """Each searched hyperparameter's Effect over the scored `trials` (with `rung`, those of the
    lowest rung), largest share first; hyperparameters that took one value are left out.
    `images`: how many validation images one score is measured on (its noise)."""
    scored = [t for t in trials if t.status == store.OK and math.isfinite(t.val_accuracy)]
    scored = [t for t in first_rung(trials, rung) if t.status == store.OK and math.isfinite(t.val_accuracy)]
    if len(scored) < 3:
        return []
    scores = np.array([t.val_accuracy for t in scored])
    errors = np.array([standard_error(t, images) for t in scored])
    total = float(((scores - scores.mean()) ** 2).sum())
    found = []
    for dim in dims:
        values = [plain(t.params[dim.name]) for t in scored]
        if len(set(values)) < 2:
            continue
        index, labels, thirds = _groups(values, dim)
        index = np.array(index)
        counts = np.bincount(index, minlength=len(labels))
        means = np.array([scores[index == g].mean() for g in range(len(labels))])
        explained = float((counts * (means - scores.mean()) ** 2).sum())
        group_se = np.array([math.sqrt(float((errors[index == g] ** 2).sum())) / c for g, c in enumerate(counts)])
        hi, lo = int(np.argmax(means)), int(np.argmin(means))
        found.append(Effect(dim.name, labels, tuple(int(c) for c in counts), tuple(float(m) for m in means),
                            explained / total if total > 0 else 0.0, (len(labels) - 1) / (len(scored) - 1),
                            float(means[hi] - means[lo]), 2 * math.hypot(group_se[hi], group_se[lo]), thirds,
                            f_test(scores, index, len(labels))))
    return sorted(found, key=lambda e: -e.share)


def f_test(scores, index, groups):
    """The one-way ANOVA F test's p-value (scipy.stats.f_oneway); NaN where it cannot be
    computed (a group per trial, or no spread at all); 0 when the groups differ and nothing
    varies within them."""
    from scipy import stats

    members = [scores[index == g] for g in range(groups)]
    if len(scores) <= groups:
        return math.nan
    within = sum(float(((m - m.mean()) ** 2).sum()) for m in members)
    if within == 0:
        return 0.0 if len({float(m.mean()) for m in members}) > 1 else math.nan
    return float(stats.f_oneway(*members).pvalue)


def format_effects(found, trials_read, images=None, left_out=0, pruned=0):
    """The table and its cautions; '' when nothing can be said (fewer than 3 scored trials, or
    no hyperparameter took two values)."""
    if not found:
        return ""
    rows = [[e.name, f"{len(e.groups)} {'thirds' if e.thirds else 'values'}",
             f"{e.share:.2f}", f"{e.chance:.2f}", f"{e.p:.3f}" if math.isfinite(e.p) else "-", e.best,
             f"{e.spread:.4f}", f"{e.noise:.4f}" if math.isfinite(e.noise) else "-", e.reading] for e in found]
    table = outputs.format_table(["hyperparameter", "groups", "share", "chance", "p", "best group", "spread",
                                  "2 se", "reading"], rows)
    parts = [f"{pruned} pruned (stopped early: a score so far is no score)" if pruned else "",
             f"{left_out - pruned} without a score" if left_out > pruned else ""]
    dropped = f"; {' and '.join(p for p in parts if p)} left out" if left_out else ""
    lines = [f"which hyperparameters matter ({trials_read} trials{dropped}; share: of the scores' variance, "
             "explained by one hyperparameter's groups; p: F test):", table]
    if trials_read < FEW:
        lines.append(f"caution: only {trials_read} trials: each group's mean rests on a few scores, so these "
                     "shares are rough; more trials sharpen them.")
    if all(e.reading != "stands out" for e in found):
        noise = f" of {images} validation images" if images else ""
        lines.append(f"caution: no hyperparameter stands out from chance or from the noise{noise}: on this "
                     "search's evidence none of them is shown to matter.")
    lines.append("shares need not add up to 1; where sampled values are correlated (random by chance, "
                 "Bayesian by design) one can borrow another's.")
    return "\n".join(lines)


def report(trials, dims, images=None, rung=None):
    """format_effects of `trials`: what a search prints after its ranked table."""
    found = effects(trials, dims, images, rung)
    trials = first_rung(trials, rung)
    read = [t for t in trials if t.status == store.OK and math.isfinite(t.val_accuracy)]
    cv = any(t.kind == "cv" for t in read)  # the noise is the folds', not one split's images
    return format_effects(found, len(read), None if cv else images, left_out=len(trials) - len(read),
                          pruned=sum(t.status == store.PRUNED for t in trials))


def first_rung(trials, rung):
    if not rung:
        return trials
    budgets = [t.params[rung] for t in trials]
    return [t for t in trials if t.params[rung] == min(budgets)] if budgets else []

