"""Study: does BN allow a higher learning rate, and does it converge faster? (issue 11, claims 1-2)

Ioffe & Szegedy (2015) trained Inception with BN at 5 and 30 times its learning rate (BN-x5,
BN-x30) and reached its 72.2% accuracy in 2.1M and 2.7M steps against 31.0M; without BN the same
5x increase diverged. Here the project's own grid search does the sweep: the baseline and the BN
model (--batch-norm false,true) at learning rates from 1e-4 to 1, log-spaced, each trained with
several seeds (--repeats), for a fixed number of epochs (patience = epochs: no early stopping).

    python experiments/bn_learning_rate.py --data-dir ../shared/beans

It prints, per learning rate, each model's best validation accuracy (mean [min-max] over seeds),
the widest learning-rate interval in which each model's mean reaches --threshold, and, at each
model's best learning rate, the epochs its trainings needed to first reach the threshold (from
histories.jsonl). It writes OUT/table.txt, OUT/study.json and OUT/convergence.png (validation
accuracy per epoch at each model's best learning rate, one line per seed); the grid search's own
OUT/grid/val_accuracy.png is the sweep's figure (one line per model, the band over seeds).
Rerunning resumes: the grid search keeps every finished training.
"""

import statistics
import sys

from beans_tune import cli, outputs
from beans_tune.tuning.store import DIVERGED, OK

import shared  # experiments/shared.py, found beside the experiment it runs

RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
MODELS = {False: "baseline", True: "bn"}


def grid_argv(args, out):
    """The sweep as a grid search: only BN and the learning rate vary (the default grid's other
    dimensions fixed at the BN model's defaults: 3 conv blocks, no decay, batch 32, trained as
    the training scripts train it)."""
    rates = ",".join(repr(r) for r in sorted(args.rates))  # exact: 1e-3 and 1.0000001e-3 stay two rates
    return ["--batch-norm", "false,true", "--learning-rate", rates, "--repeats", str(args.seeds),
            "--epochs", str(args.epochs), "--patience", str(args.epochs), "--decay", "0", "--layers", "3",
            "--batch-size", "32", "--image-size", str(args.image_size), "--out", str(out),
            *(["--data-dir", args.data_dir] if args.data_dir else []), *shared.untuned_training_flags()]


def first_epoch_at(history, threshold):
    """The first epoch (1-based) whose validation accuracy reaches `threshold`, or None."""
    return next((i for i, v in enumerate(history.get("val_accuracy", []), 1) if v >= threshold), None)


def widest_interval(rates, means, threshold):
    """The widest run of consecutive rates whose mean reaches `threshold`: (low, high), or None."""
    best, start = None, None
    for i, (rate, mean) in enumerate(zip(rates, means)):
        if mean is not None and mean >= threshold:
            start = i if start is None else start
            if best is None or rates[i] / rates[start] > best[1] / best[0]:
                best = (rates[start], rate)
        else:
            start = None
    return best


def summarize(out, threshold):
    """{model: {"per_rate": {rate: [scores]}, "interval": (lo, hi), "best_rate", "epochs_to": [...],
    "curves": [[val_acc per epoch] per seed]}} from the grid search's store."""
    store = shared.grid_store(out)
    rows, histories = store.rows(), store.histories()
    found = {}
    for bn, model in MODELS.items():
        mine = [(n, r) for n, r in enumerate(rows, 1) if r["params"]["batch_norm"] == bn]
        per_rate, missing = {}, 0
        for _, r in mine:
            if r["status"] not in (OK, DIVERGED):  # failed or timed out: not a result (rerun to retry)
                missing += 1
                continue
            score = r["val_accuracy"] if r["status"] == OK else 0.0  # a diverged training reached nothing
            per_rate.setdefault(r["params"]["learning_rate"], []).append(score)
        rates = sorted(per_rate)
        means = [statistics.mean(per_rate[r]) for r in rates]
        if not rates:  # every training of this model failed
            found[model] = {"per_rate": {}, "interval": None, "best_rate": None, "missing": missing,
                            "epochs_to": [], "curves": []}
            continue
        best_rate = rates[max(range(len(rates)), key=lambda i: means[i])]
        at_best = [n for n, r in mine if r["params"]["learning_rate"] == best_rate]
        found[model] = {"per_rate": per_rate, "interval": widest_interval(rates, means, threshold),
                        "best_rate": best_rate, "missing": missing,
                        "epochs_to": [first_epoch_at(histories.get(n, {}), threshold) for n in at_best],
                        "curves": [histories.get(n, {}).get("val_accuracy", []) for n in at_best]}
    return found


def spread(values):
    return f"{statistics.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def table(found, threshold):
    rates = sorted(set(found["baseline"]["per_rate"]) | set(found["bn"]["per_rate"]))
    rows = [[f"{rate:g}", *(spread(found[m]["per_rate"][rate]) if rate in found[m]["per_rate"] else "-"
                            for m in MODELS.values())] for rate in rates]
    text = outputs.format_table(["learning rate", "baseline val_acc mean [min, max]", "bn val_acc mean [min, max]"],
                                rows)
    lines = [text, ""]
    for model in MODELS.values():
        f = found[model]
        if f["best_rate"] is None:
            lines.append(f"{model:8s}: no result (every training failed)")
            continue
        interval = f["interval"]
        reached = [e for e in f["epochs_to"] if e is not None]
        lines.append(
            f"{model:8s}: mean >= {threshold:g} for learning rates "
            + (f"{interval[0]:g} to {interval[1]:g} ({interval[1] / interval[0]:g}x)" if interval else "none")
            + f"; best rate {f['best_rate']:g}: first reached {threshold:g} at epoch "
            + (f"{statistics.median(reached):g} (median; seeds: {', '.join(str(e) for e in f['epochs_to'])})"
               if reached else "never"))
    if missing := sum(found[m].get("missing", 0) for m in MODELS.values()):
        lines.append(f"{missing} training(s) failed or timed out and are left out of the means (why: the message "
                     "column of grid/results.csv)")
    return "\n".join(lines)


def figure(found, threshold, title):
    fig, (ax,) = shared.figure()
    for colour, model in enumerate(MODELS.values()):
        for i, curve in enumerate(found[model]["curves"]):
            ax.plot(range(1, len(curve) + 1), curve, color=f"C{colour}", alpha=0.8,
                    label=f"{model}, learning rate {found[model]['best_rate']:g}" if i == 0 else None)
    ax.axhline(threshold, color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    return shared.finish(fig, [ax], title, {"loc": "lower right"})


PROG = "bn_learning_rate.py"


def main(argv=None):
    return cli.run_cli(run, argv, PROG)


def run(argv):
    parser = shared.parser(PROG, __doc__, epochs=10, out="runs/study-bn-learning-rate")
    parser.add_argument("--threshold", type=cli.number(float, 0, 1), default=0.8,
                        help="validation accuracy the learning-rate interval and the convergence epoch refer to")
    parser.add_argument("--rates", type=shared.number_list(float, 0, 10, low_open=True), default=RATES,
                        help="learning rates, comma list")
    args = parser.parse_args(argv)
    grid = shared.run_grid(parser, args, "bn_learning_rate", {"rates": args.rates}, grid_argv)
    folder = grid.parent
    found = summarize(grid, args.threshold)
    shared.save(folder, table(found, args.threshold), {"args": vars(args), "models": {
        m: {**f, "per_rate": {f"{r:g}": s for r, s in f["per_rate"].items()}} for m, f in found.items()}},
        {"convergence.png": figure(found, args.threshold, f"beans, {args.image_size}x{args.image_size}: validation "
                                   f"accuracy per epoch at each model's best learning rate ({outputs.count(args.seeds, 'seed')})")})
    print(f"the sweep's figure: {folder}/grid/val_accuracy.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
