"""Study: does BN regularize through mini-batch noise, less so with larger batches? (issue 11, claim 3)

BN normalizes each image with the statistics of the batch it happens to be in, so an image's
activations carry noise from its batch-mates; the lecture presents this as a slight
regularization that weakens as batches grow (Ioffe & Szegedy 2015 remove dropout from BN-Inception
for this reason). Here a grid search trains the BN model and the baseline at batch sizes 16 to
256, several seeds each, a fixed number of epochs (patience = epochs), and the study reads each
training's per-epoch history: training accuracy (Keras's running accuracy over the epoch, BN in
training mode) minus validation accuracy, at the epoch of best validation accuracy. A larger
batch also means fewer steps per epoch (65 at 16, 5 at 256): the epochs are fixed, the steps
are not, and the table shows both.

    python experiments/bn_batch_size.py --data-dir ../shared/beans

Writes OUT/table.txt, OUT/study.json and OUT/gap.png; the grid search's own
OUT/grid/val_accuracy.png shows validation accuracy per batch size (one line per model).
"""

import collections
import math
import statistics
import sys

from beans_tune import cli, outputs
from beans_tune.tuning.store import OK

import shared  # experiments/shared.py, found beside the experiment it runs
from shared import median_range

BATCH_SIZES = (16, 32, 64, 128, 256)
MODELS = {False: "baseline", True: "bn"}


def grid_argv(args, out):
    """Only BN and the batch size vary; the rest at the BN model's defaults (3 blocks, no decay)."""
    return ["--batch-norm", "false,true", "--batch-size", ",".join(str(b) for b in sorted(args.batch_sizes)),
            "--repeats", str(args.seeds), "--learning-rate", "1e-3", "--layers", "3", "--decay", "0",
            "--epochs", str(args.epochs), "--patience", str(args.epochs), "--image-size", str(args.image_size),
            "--out", str(out), *(["--data-dir", args.data_dir] if args.data_dir else []),
            *shared.untuned_training_flags()]


def gap_at_best(history):
    """(training accuracy, validation accuracy) at the epoch of best validation accuracy."""
    val, train = history.get("val_accuracy", []), history.get("accuracy", [])
    if not val or len(train) != len(val):
        return None
    best = max(range(len(val)), key=lambda i: val[i])
    return train[best], val[best]


def summarize(out):
    """{model: {batch size: [(train acc, val acc), or the status of a training without a result,
    per seed]}} from the grid search's store."""
    store = shared.grid_store(out)
    histories = store.histories()
    found = {model: {} for model in MODELS.values()}
    for number, row in enumerate(store.rows(), 1):
        pair = (gap_at_best(histories.get(number, {})) or "no-history") if row["status"] == OK else row["status"]
        model = MODELS[bool(row["params"]["batch_norm"])]
        found[model].setdefault(int(row["params"]["batch_size"]), []).append(pair)  # a status: no result
    return found


def table(found, images):
    sizes = sorted({b for per in found.values() for b in per})
    rows, missing = [], collections.Counter()
    for size in sizes:
        row = [size, math.ceil(images / size)]
        for model in MODELS.values():
            pairs = [p for p in found[model].get(size, []) if not isinstance(p, str)]
            missing.update(p for p in found[model].get(size, []) if isinstance(p, str))
            row += [median_range([t for t, _ in pairs]), median_range([v for _, v in pairs]),
                    median_range([t - v for t, v in pairs])]
        rows.append(row)
    headers = ["batch size", f"steps/epoch ({images:,} images)"] + [f"{m} {what}" for m in MODELS.values()
                                                                     for what in ("train acc", "val acc", "gap")]
    text = outputs.format_table(headers, rows)
    if missing:
        text += ("\nleft out: " + ", ".join(f"{n} {status}" for status, n in sorted(missing.items()))
                 + " training(s) (see grid/results.csv)")
    return text


def figure(found, title):
    fig, (ax,) = shared.figure()
    for colour, model in enumerate(MODELS.values()):
        sizes = sorted(b for b, pairs in found[model].items() if any(not isinstance(p, str) for p in pairs))
        gaps = [[p[0] - p[1] for p in found[model][b] if not isinstance(p, str)] for b in sizes]
        ax.plot(sizes, [statistics.median(g) for g in gaps], marker="o", color=f"C{colour}", label=model)
        ax.fill_between(sizes, [min(g) for g in gaps], [max(g) for g in gaps], color=f"C{colour}", alpha=0.2,
                        linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("mini-batch size")
    ax.set_ylabel("train - validation accuracy at the best epoch")
    return shared.finish(fig, [ax], title)


PROG = "bn_batch_size.py"


def main(argv=None):
    return cli.run_cli(run, argv, PROG)


def run(argv):
    parser = shared.parser(PROG, __doc__, epochs=15, out="runs/study-bn-batch-size")
    parser.add_argument("--batch-sizes", type=shared.number_list(int, 1, 1024), default=BATCH_SIZES,
                        help="training batch sizes, comma list")
    args = parser.parse_args(argv)
    grid = shared.run_grid(parser, args, "bn_batch_size", {"batch_sizes": args.batch_sizes}, grid_argv)
    folder = grid.parent
    found = summarize(grid)
    shared.save(folder, table(found, shared.train_images(args.data_dir)), {"args": vars(args), "models": {
        m: {str(b): pairs for b, pairs in per.items()} for m, per in found.items()}},
        {"gap.png": figure(found, f"beans, {args.image_size}x{args.image_size}, {outputs.epoch_count(args.epochs)}: train - "
                                  f"validation accuracy ({outputs.count(args.seeds, 'seed')}, median and range)")})
    print(f"validation accuracy per batch size: {folder}/grid/val_accuracy.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
