"""Study: at test time BN uses moving averages of mu and sigma^2 from training (issue 11, claim 4).

In training, BatchNormalization normalizes each mini-batch with that batch's own mean and
variance; at inference it uses moving averages kept during training (Keras: moving = momentum *
moving + (1 - momentum) * batch), so a prediction does not depend on which other images share
its batch. This trains the BN model at several BN momenta (several seeds each, a fixed number of
epochs) and evaluates its last epoch's weights on the validation split (the last, not the best:
an epoch picked by its moving-average validation accuracy would favour the moving averages)

- with its moving averages (inference mode, how every script here evaluates), and
- with each batch's own statistics (training-mode BN), for batches of several sizes;

it also measures how far the moving averages are from the statistics of the whole training set
under the final weights (|moving mean - mean| / std, and |log(moving variance / variance)|,
averaged over channels and BN layers), and how much the validation accuracy swings from epoch to
epoch in the second half of training (what the former bench/bn_momentum.py measured before it
was folded in here; docs/accuracy.md's Defaults cite this study for bn_momentum 0.6).

    python experiments/bn_inference.py --data-dir ../shared/beans

Writes OUT/table.txt, OUT/study.json and OUT/inference.png.
"""

import statistics
import sys
from pathlib import Path

import numpy as np

from beans_tune import cli, outputs, training
from beans_tune.hparams import HParams
from beans_tune.images import Beans

import shared  # experiments/shared.py, found beside the experiment it runs
from shared import median_range


def batch_stat_accuracy(model, split, batch_size, seed):
    """Validation accuracy with BN normalizing each batch by its own statistics (training mode).
    The moving averages that training mode updates are put back afterwards."""
    saved = model.get_weights()
    order = np.random.default_rng(seed).permutation(len(split))
    correct = 0
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        probabilities = np.asarray(model(split.x[rows], training=True))
        correct += int((probabilities.argmax(axis=1) == split.y[rows]).sum())
    model.set_weights(saved)
    return correct / len(split)


def moving_average_error(model, split):
    """(mean |moving mean - mean| / std, mean |log(moving var / var)|) over the channels of every
    BN layer, the statistics taken over all of `split` under the model's weights."""
    import keras

    bn_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(model.inputs, [layer.input for layer in bn_layers])
    activations = probe.predict(split.x, batch_size=128, verbose=0)
    mean_errors, var_errors = [], []
    for layer, values in zip(bn_layers, activations):
        axes = tuple(range(values.ndim - 1))
        mean, var = values.mean(axis=axes), values.var(axis=axes)
        moving_mean = np.asarray(layer.moving_mean)
        moving_var = np.asarray(layer.moving_variance)
        mean_errors.append(np.mean(np.abs(moving_mean - mean) / np.sqrt(var + layer.epsilon)))
        var_errors.append(np.mean(np.abs(np.log((moving_var + layer.epsilon) / (var + layer.epsilon)))))
    return float(np.mean(mean_errors)), float(np.mean(var_errors))


def swing(history):
    """Mean |epoch-to-epoch change| of validation accuracy over the second half of training (None
    with fewer than 3 epochs)."""
    values = np.array(history["val_accuracy"])
    return float(np.abs(np.diff(values[len(values) // 2:])).mean()) if len(values) > 2 else None


def measure(beans, momentum, seed, epochs, batch_sizes):
    hp = HParams(batch_norm=True, bn_momentum=momentum, epochs=epochs, patience=epochs)
    result = training.train(hp, beans.train, beans.validation, seed=seed, log=None, keep_best=False)
    record = {"momentum": momentum, "seed": seed, "moving": training.evaluate(result.model, beans.validation),
              "best_moving": max(result.history["val_accuracy"]), "swing": swing(result.history)}
    for size in batch_sizes:
        record[f"batch{size}"] = batch_stat_accuracy(result.model, beans.validation, size, seed)
    record["mean_error"], record["var_error"] = moving_average_error(result.model, beans.train)
    return record


def table(records, batch_sizes):
    headers = ["bn_momentum", "val_acc, moving averages", *[f"batch statistics, batch {b}" for b in batch_sizes],
               "best epoch's val_acc (moving)",
               "|moving mean - mean| / std", "|log(moving var / var)|", "epoch-to-epoch |d val_acc|"]
    rows = []
    for momentum in dict.fromkeys(r["momentum"] for r in records):
        mine = [r for r in records if r["momentum"] == momentum]
        rows.append([f"{momentum:g}", median_range([r["moving"] for r in mine]),
                     *[median_range([r[f"batch{b}"] for r in mine]) for b in batch_sizes],
                     median_range([r["best_moving"] for r in mine]), median_range([r["mean_error"] for r in mine]),
                     median_range([r["var_error"] for r in mine]), median_range([r["swing"] for r in mine])])
    return outputs.format_table(headers, rows)


def figure(records, batch_sizes, title):
    fig, (ax,) = shared.figure()
    momenta = list(dict.fromkeys(r["momentum"] for r in records))
    curves = {m: [statistics.median(r[f"batch{b}"] for r in records if r["momentum"] == m) for b in batch_sizes]
              for m in momenta}
    if all(curve == curves[momenta[0]] for curve in curves.values()):
        # the momentum only sets the moving averages: training, and so the weights, are the same
        ax.plot(batch_sizes, curves[momenta[0]], marker="o", color="black",
                label="batch statistics (the same weights at every momentum)")
    for colour, momentum in enumerate(momenta):
        if len(set(map(tuple, curves.values()))) > 1:
            ax.plot(batch_sizes, curves[momentum], marker="o", color=f"C{colour}",
                    label=f"batch statistics, momentum {momentum:g}")
        ax.axhline(statistics.median(r["moving"] for r in records if r["momentum"] == momentum), color=f"C{colour}",
                   linestyle="--", label=f"moving averages, momentum {momentum:g}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("evaluation batch size (validation images normalized together)")
    ax.set_ylabel("validation accuracy (median over seeds)")
    return shared.finish(fig, [ax], title, {"loc": "lower right"})


PROG = "bn_inference.py"


def main(argv=None):
    return cli.run_cli(run, argv, PROG)


def run(argv):
    parser = shared.parser(PROG, __doc__, epochs=20, out="runs/study-bn-inference")
    parser.add_argument("--momenta", type=shared.number_list(float, 0, 0.999), default=(0.99, 0.9, 0.6),
                        help="BN momenta, comma list")
    parser.add_argument("--batch-sizes", type=shared.number_list(int, 1, 4096), default=(4, 16, 64, 133),
                        help="evaluation batch sizes for batch statistics, comma list")
    args = parser.parse_args(argv)
    with shared.study_folder(parser, args, "bn_inference", {"image_size": args.image_size, "epochs": args.epochs,
                                                            "batch_sizes": args.batch_sizes}) as done:
        beans = Beans(args.data_dir, image_size=args.image_size)
        folder = Path(args.out)
        records = []
        for momentum in args.momenta:
            for seed in range(args.seeds):
                record = done.find(momentum=momentum, seed=seed)
                if record is None:
                    record = measure(beans, momentum, seed, args.epochs, args.batch_sizes)
                    done.add(record)
                records.append(record)
                print(f"momentum {momentum:g} seed {seed}: moving {record['moving']:.3f}  "
                      + "  ".join(f"batch {b} {record[f'batch{b}']:.3f}" for b in args.batch_sizes)
                      + f"  mean error {record['mean_error']:.3f}  swing "
                      + ("-" if record["swing"] is None else f"{record['swing']:.3f}"), flush=True)
        shared.save(folder, table(records, args.batch_sizes), {"args": vars(args), "records": records},
                    {"inference.png": figure(records, args.batch_sizes, f"beans, BN model, {args.image_size}x"
                                             f"{args.image_size}, {outputs.epoch_count(args.epochs)}: moving averages vs batch "
                                             f"statistics ({outputs.count(args.seeds, 'seed')})")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
