"""Benchmark (not a test): is the input pipeline ever the bottleneck, and does memory grow?

1. Epoch time of the default model fed by the project's tf.data pipeline (training.make_dataset:
   seeded shuffle, batch, prefetch) / epoch time fed from in-memory tensors
   (model.fit(x, y)). Target <= 1.05.
2. Peak RSS of a process after training 2 vs 10 models one after another (training.train calls
   keras.backend.clear_session() before each). Target ratio <= 1.2.

    python experiments/pipeline.py --data-dir ../shared/beans
"""

import argparse
import resource
import statistics
import subprocess
import sys
import time

from beans_tune import cnn, outputs, training
from beans_tune.hparams import HParams
from beans_tune.images import Beans


def epoch_times(hp, beans, feed, epochs, seed=0):
    """Per-epoch wall times of the default model, fed by `feed` ('tf.data' or 'tensors')."""
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = cnn.build_model(hp, beans.image_size, num_classes=len(beans.classes))
    model.compile(optimizer=cnn.make_optimizer(hp, 1), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    train, val = beans.train, beans.validation
    if feed == "tf.data":
        model.fit(training.make_dataset(train, hp.batch_size, seed=seed, training=True),
                  validation_data=training.make_dataset(val, hp.batch_size), epochs=epochs, verbose=0,
                  shuffle=False, callbacks=[Timer()])
    else:
        model.fit(train.x, train.y, batch_size=hp.batch_size, validation_data=(val.x, val.y),
                  epochs=epochs, verbose=0, shuffle=True, callbacks=[Timer()])
    return times[1:]  # the first epoch traces the graph


def child(args):
    """Trains args.child_models models in this process; prints peak RSS in MiB."""
    beans = Beans(args.data_dir, image_size=args.image_size)
    hp = HParams(epochs=args.rss_epochs, patience=args.rss_epochs)
    for seed in range(args.child_models):
        training.train(hp, beans.train, beans.validation, seed=seed, log=None)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6, help="epochs per feed (the first is dropped)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per feed")
    parser.add_argument("--rss-epochs", type=int, default=2)
    parser.add_argument("--child-models", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_models:
        return child(args)

    beans = Beans(args.data_dir, image_size=args.image_size)
    hp = HParams()
    times = {"tf.data": [], "tensors": []}
    for _ in range(args.repeats):  # alternate, so drift in machine load hits both feeds
        for feed in times:
            times[feed] += epoch_times(hp, beans, feed, args.epochs)
            print(f"{feed:8s} epochs: " + " ".join(f"{t:.2f}" for t in times[feed]), flush=True)
    # Epoch times on this machine come in two clusters (~1.6 s and ~2.5 s) whichever the feed,
    # so a median of a few epochs flips between them: compare means and minimums instead.
    mean = {k: statistics.fmean(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}

    rss = {}
    for models in (2, 10):
        cmd = [sys.executable, __file__, "--child-models", str(models), "--image-size", str(args.image_size),
               "--rss-epochs", str(args.rss_epochs)] + (["--data-dir", args.data_dir] if args.data_dir else [])
        rss[models] = float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()[-1])
        print(f"peak RSS after {models} models: {rss[models]:.0f} MiB", flush=True)

    print()
    print(outputs.format_table(["measure", "value", "target"], [
        ["mean epoch, tf.data pipeline (s)", f"{mean['tf.data']:.3f}", ""],
        ["mean epoch, in-memory tensors (s)", f"{mean['tensors']:.3f}", ""],
        ["pipeline / tensors, means", f"{mean['tf.data'] / mean['tensors']:.3f}", "<= 1.05"],
        ["pipeline / tensors, fastest epochs", f"{best['tf.data'] / best['tensors']:.3f}", "<= 1.05"],
        ["peak RSS, 2 models (MiB)", f"{rss[2]:.0f}", ""],
        ["peak RSS, 10 models (MiB)", f"{rss[10]:.0f}", ""],
        ["RSS 10 / 2", f"{rss[10] / rss[2]:.3f}", "<= 1.2"],
    ]))


if __name__ == "__main__":
    main()
