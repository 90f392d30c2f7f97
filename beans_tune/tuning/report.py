"""What a search shows: one progress line per finished training, the ranked table, the figure
of validation accuracy against each searched hyperparameter."""

import math
import time

import numpy as np

from .. import outputs
from .space import fmt, plain
from .store import OK, PRUNED, rank


def duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def describe(params, fold):
    """How progress lines name a training: its searched values, and its fold unless the
    validation split."""
    shown = " ".join(f"{n}={fmt(v)}" for n, v in params.items())
    return shown + (f" [{fold}]" if fold != "validation" else "")


class Progress:
    """The store's `on_record`: prints one line per appended training, with elapsed time, an
    ETA from this run's own pace, and the best score so far. Picklable (runs in worker processes)."""

    def __init__(self, names, total, done_before=0, start=None):
        self.names = list(names)
        self.total = total
        self.done_before = done_before  # rows already in the store when this run started
        self.start = time.time() if start is None else start

    def __call__(self, number, row, best):
        elapsed = time.time() - self.start
        eta = elapsed / max(number - self.done_before, 1) * max(self.total - number, 0)
        shown = describe({n: row["params"][n] for n in self.names}, row["fold"])
        score = (f"{row['val_accuracy']:.4f}" if row["status"] == OK else
                 f"PRUNED ({row['message']})" if row["status"] == PRUNED else row["status"].upper())
        print(f"trial {number}/{self.total}  {shown}  val_acc {score}  fit {row['fit_seconds']:.1f}s  "
              f"elapsed {duration(elapsed)}  ETA {duration(eta)}  best {'-' if best is None else f'{best:.4f}'}",
              flush=True)


def standard_error(trial, images=None):
    """How far a trial's score could move on other images (and seeds): over K folds of train +
    validation, the folds' spread; over R seeds on one validation split, the seeds' spread and the
    split's `images`; on the validation split alone, its images (a seed moves it too, unmeasured)."""
    if not math.isfinite(trial.val_accuracy):
        return math.nan
    if trial.folds > 1 and math.isfinite(trial.std):
        between = trial.std / math.sqrt(trial.folds - 1)  # the sample std over folds / sqrt(folds)
        if trial.kind == "cv":
            return between
        within = outputs.binomial_se(trial.val_accuracy, images)
        return math.hypot(between, within) if math.isfinite(within) else between
    return outputs.binomial_se(trial.val_accuracy, images)


def format_trials(trials, names, top=10, rung=None, images=None):
    """The ranked table with each score's standard error (`images`: how many validation images
    one score is measured on), then a line on whether the best stands apart from the runner-up;
    a std column when configurations were scored on several folds; with successive halving
    (`rung`: the hyperparameter a rung sets), each training's rung, the highest rung first."""
    cv = any(t.folds > 1 for t in trials)
    budgets = sorted({t.params[rung] for t in trials}) if rung else []
    headers = ["rank", *(["rung"] if rung else []), *names, "val_acc", "± se"] + (["std"] if cv else []) + \
        ["fit_s", "status"]
    rows = []
    for i, t in enumerate(rank(trials, rung)[:top], 1):
        score = f"{t.val_accuracy:.4f}" if math.isfinite(t.val_accuracy) else "nan"
        se = standard_error(t, images)
        std = [f"{t.std:.4f}" if math.isfinite(t.std) else "nan"] if cv else []
        level = [budgets.index(t.params[rung])] if rung else []
        rows.append([i, *level, *(fmt(t.params.get(n, "")) for n in names), score,
                     f"{se:.4f}" if math.isfinite(se) else "-", *std, f"{t.fit_seconds:.1f}",
                     t.status if not t.message else f"{t.status}: {t.message[:40]}"])
    table = outputs.format_table(headers, rows)
    line = separation(trials, images, rung)
    return f"{table}\n{line}" if line else table


def separation(trials, images=None, rung=None):
    """Whether the best configuration stands apart from the runner-up by more than two standard
    errors of their difference (the two errors combined as if independent: scored on the same
    images they are not, which makes this a cautious reading, while the seed, left out of a
    single split's error, makes it a bold one), how many others lie that close to the best, and
    what would tell them apart; '' with fewer than two scored configurations (of the top rung,
    with halving)."""
    ok = [t for t in rank(trials, rung) if t.status == OK and math.isfinite(t.val_accuracy)]
    if rung and ok:
        ok = [t for t in ok if t.params[rung] == ok[0].params[rung]]
    if len(ok) < 2:
        return ""
    best, second = ok[0], ok[1]
    errors = [standard_error(t, images) for t in ok]
    if not all(math.isfinite(e) for e in errors[:2]):
        return ""
    gap = best.val_accuracy - second.val_accuracy
    noise = math.hypot(errors[0], errors[1])
    close = sum(best.val_accuracy - t.val_accuracy <= 2 * math.hypot(errors[0], e) for t, e in zip(ok[1:], errors[1:])
                if math.isfinite(e))
    others = f"{close} of the other {len(ok) - 1} configurations lie" if close != 1 else \
        f"1 of the other {len(ok) - 1} configurations lies"
    seeds = f"its {best.folds} seeds" + (f" and {images} validation images" if images else "")
    over = {"cv": f"its {best.folds} folds", "seeds": seeds, "validation": f"{images} validation images"}[best.kind]
    if gap == 0:
        return (f"best vs runner-up: {best.val_accuracy:.4f} each, a tie (the first trained is kept); {others} "
                f"within 2 standard errors of the best (over {over}).")
    apart = f"{gap:.4f} apart" + (f" ({gap * images:.0f} of {images} validation images)"
                                  if best.kind == "validation" and images else "")
    if noise == 0:  # folds or seeds that agree to the digit
        return f"best vs runner-up: {best.val_accuracy:.4f} vs {second.val_accuracy:.4f}, {apart}, with no spread over {over}."
    head = (f"best vs runner-up: {best.val_accuracy:.4f} vs {second.val_accuracy:.4f}, {apart}: "
            f"{gap / noise:.1f} standard errors of the difference ({noise:.4f}, over {over})")
    if gap > 2 * noise:
        return head + "; separated."
    if best.kind == "cv":
        more = "more folds (--cv) would narrow the error"
    elif best.kind == "seeds":
        more = "more seeds (--repeats) narrow the seeds' part of the error"
    else:
        needed = f"about {images * (2 * noise / gap) ** 2:,.0f} validation images" if images else "more validation images"
        more = (f"telling them apart at 2 standard errors takes {needed}; --cv K (tune_grid.py, tune_random.py) "
                "scores every train + validation image, tune_grid.py --repeats R averages R seeds (this error "
                "counts images, not seeds)")
    return head + f"; within noise: {others} within 2 standard errors of the best.\n{more}."


def series_dim(dims):
    """The hyperparameter whose values get a line each in the figure: the first searched one with
    a few non-numeric choices (batch_norm, optimizer, augment), or None."""
    for dim in dims:
        if not dim.is_range and 1 < len(dim.choices) <= 8 and all(
                isinstance(v, (bool, np.bool_, str)) for v in dim.choices):
            return dim
    return None


def plot_scores(trials, dims):
    """Validation accuracy against each searched hyperparameter; log axes where sampled in log.

    With a searched categorical hyperparameter (series_dim: --batch-norm false,true), each of
    its values is a series of its own colour, drawn as a line through its configurations where
    they differ only along the panel's axis, with the min-max range over repeats (--repeats) as a
    band; a configuration trained several times shows its mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [t for t in trials if math.isfinite(t.val_accuracy)]
    split = series_dim(dims)
    panels = [d for d in dims if d is not split] or list(dims)
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    best = rank(ok)[0] if ok else None
    groups = ([(f"{split.name}={fmt(v)}", [t for t in ok if plain(t.params[split.name]) == plain(v)])
               for v in split.choices] if split is not None and panels != [split] else [(None, ok)])
    for ax, dim in zip(axes.flat, panels):
        flip = (lambda v: 1 - v) if dim.scale == "1-log" else (lambda v: v)

        def x_of(t):
            x = flip(plain(t.params[dim.name]))
            return x if isinstance(x, str) else float(x)

        for colour, (label, members) in enumerate(groups):
            xs = [x_of(t) for t in members]
            if label is not None and members and len(set(xs)) == len(xs) and not any(isinstance(x, str) for x in xs):
                line = sorted(members, key=x_of)  # one configuration per x: a curve
                ax.plot([x_of(t) for t in line], [t.val_accuracy for t in line], marker="o", color=f"C{colour}",
                        label=label)
                if any(t.folds > 1 for t in line):
                    ax.fill_between([x_of(t) for t in line], [t.low for t in line], [t.high for t in line],
                                    color=f"C{colour}", alpha=0.2, linewidth=0)
            else:
                ax.scatter(xs, [t.val_accuracy for t in members], alpha=0.7, color=f"C{colour}", label=label)
        if best is not None:
            ax.scatter([x_of(best)], [best.val_accuracy], color="C3", marker="*", s=160, label="best", zorder=3)
        xs = [x_of(t) for t in ok]
        if dim.scale in ("log", "1-log", "pow2") and xs and all(isinstance(v, float) and v > 0 for v in xs):
            ax.set_xscale("log", base=2 if dim.scale == "pow2" else 10)
        ax.set_xlabel(f"1 - {dim.name}" if dim.scale == "1-log" else dim.name)
        ax.set_ylabel("validation accuracy" + (" (mean, min-max band)" if any(t.folds > 1 for t in ok) else ""))
        ax.grid(alpha=0.3)
        if groups[0][0] is not None:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig
