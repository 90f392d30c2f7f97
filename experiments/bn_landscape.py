"""Study: does BN make the loss landscape smoother? (issue 11, claim 5; the lecture's "Hypothesis 3")

Santurkar, Tsipras, Ilyas & Madry (NeurIPS 2018, "How does batch normalization help
optimization?", Figure 4) step along the gradient from points along training and measure how
much the loss varies over the step sizes ("loss landscape") and how much the gradient changes
("gradient predictiveness"); with BN both vary far less. This trains the baseline and the BN
model with the scripts' optimizer (Adam, learning rate 1e-3) and, after every epoch, on a few
fixed training batches:

- computes the loss L(w) and its gradient g (BN in training mode, as the step is taken),
- evaluates L(w - eta * g) and the gradient there for each step size eta,
- records the range of those losses (max - min over eta, the landscape's variation) and the
  largest ||g(w - eta * g) - g(w)|| / ||g(w)|| (how far the gradient is from predicting itself),

then puts the weights back. Medians over batches and seeds per epoch.

    python experiments/bn_landscape.py --data-dir ../shared/beans

Writes OUT/table.txt, OUT/study.json and OUT/landscape.png.
"""

import statistics
import sys
from pathlib import Path

import numpy as np

from beans_tune import cli, cnn, outputs, training
from beans_tune.hparams import HParams
from beans_tune.images import Beans

import shared  # experiments/shared.py, found beside the experiment it runs
from shared import median_range

STEPS = (0.01, 0.03, 0.1, 0.3)
MODELS = {"baseline": False, "bn": True}


def probe(model, x, y, steps):
    """(loss range over the steps, largest relative gradient change) from the current weights on
    one batch; the weights (BN's moving statistics included) are put back."""
    import keras
    import tensorflow as tf

    saved = model.get_weights()
    variables = model.trainable_variables

    def loss_and_grad():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=True)))
        return float(loss), tape.gradient(loss, variables)

    _, grad = loss_and_grad()
    norm = float(tf.linalg.global_norm(grad)) or 1.0
    losses, changes = [], []
    for eta in steps:
        model.set_weights(saved)
        for variable, g in zip(variables, grad):
            variable.assign_sub(eta * g)
        loss, moved = loss_and_grad()
        losses.append(loss)
        changes.append(float(tf.linalg.global_norm([a - b for a, b in zip(moved, grad)])) / norm)
    model.set_weights(saved)
    return max(losses) - min(losses), max(changes)


def trajectory(beans, batch_norm, seed, epochs, steps, batches, batch_size=32):
    """Per epoch: (median loss range, median gradient change) over `batches` fixed training batches."""
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    hp = HParams(batch_norm=batch_norm, epochs=epochs)
    model = cnn.build_model(hp, beans.train.x.shape[1], num_classes=len(beans.classes))
    model.compile(optimizer=cnn.make_optimizer(hp, 1), loss="sparse_categorical_crossentropy")
    rows = np.random.default_rng(seed).choice(len(beans.train), size=(batches, batch_size), replace=False)
    data = training.make_dataset(beans.train, hp.batch_size, seed=seed, training=True)
    points = []
    for epoch in range(1, epochs + 1):
        model.fit(data, epochs=1, verbose=0, shuffle=False)  # make_dataset shuffles
        measured = [probe(model, beans.train.x[r], beans.train.y[r], steps) for r in rows]
        points.append((epoch, float(np.median([m[0] for m in measured])), float(np.median([m[1] for m in measured]))))
    return points


def table(records, epochs):
    rows = []
    for epoch in range(1, epochs + 1):
        row = [epoch]
        for what in (1, 2):
            for model in MODELS:
                row.append(median_range([r["points"][epoch - 1][what] for r in records if r["model"] == model]))
        rows.append(row)
    return outputs.format_table(["epoch", "loss range: baseline", "loss range: bn", "gradient change: baseline",
                                 "gradient change: bn"], rows)


def figure(records, epochs, title):
    fig, axes = shared.figure(2)
    xs = list(range(1, epochs + 1))
    for ax, what, label in ((axes[0], 1, "loss range over the step sizes"),
                            (axes[1], 2, "max ||g(w - eta g) - g(w)|| / ||g(w)||")):
        for colour, model in enumerate(MODELS):
            values = [[r["points"][e - 1][what] for r in records if r["model"] == model] for e in xs]
            ax.plot(xs, [statistics.median(v) for v in values], color=f"C{colour}", label=model)
            ax.fill_between(xs, [min(v) for v in values], [max(v) for v in values], color=f"C{colour}", alpha=0.2,
                            linewidth=0)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
    return shared.finish(fig, axes, title)


PROG = "bn_landscape.py"


def main(argv=None):
    return cli.run_cli(run, argv, PROG)


def run(argv):
    parser = shared.parser(PROG, __doc__, epochs=10, out="runs/study-bn-landscape")
    parser.add_argument("--batches", type=cli.number(int, 1, 30), default=4, help="fixed batches probed per epoch")
    parser.add_argument("--steps", type=shared.number_list(float, 0, 100, low_open=True), default=STEPS,
                        help="step sizes along the gradient, comma list")
    args = parser.parse_args(argv)
    fits = (lambda images: f"--batches: {args.batches} batches of 32 exceed the {images} training images"
            if args.batches * 32 > images else None)
    with shared.study_folder(parser, args, "bn_landscape", {"image_size": args.image_size, "epochs": args.epochs,
                                                            "steps": args.steps, "batches": args.batches},
                             fits=fits) as done:
        beans = Beans(args.data_dir, image_size=args.image_size)
        folder = Path(args.out)
        records = []
        for model, batch_norm in MODELS.items():
            for seed in range(args.seeds):
                record = done.find(model=model, seed=seed)
                if record is None:
                    record = {"model": model, "seed": seed,
                              "points": trajectory(beans, batch_norm, seed, args.epochs, args.steps, args.batches)}
                    done.add(record)
                records.append(record)
                points = record["points"]
                print(f"{model:8s} seed {seed}: loss range {points[0][1]:.3f} -> {points[-1][1]:.3f}, gradient change "
                      f"{points[0][2]:.3f} -> {points[-1][2]:.3f} (epoch 1 -> {args.epochs})", flush=True)
        steps = ", ".join(f"{s:g}" for s in args.steps)
        title = (f"beans, {args.image_size}x{args.image_size}, Adam 1e-3: stepping along the gradient by {steps} "
                 f"({outputs.count(args.seeds, 'seed')})")
        shared.save(folder, table(records, args.epochs), {"args": vars(args), "records": records},
                    {"landscape.png": figure(records, args.epochs, title)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
