"""Benchmark (not a test): the fixed cost of one training, what it pays beyond its epochs.

Each training runs 2 epochs of the BN model on the beans train split (validation each epoch), in
one process, one after another as a search's trainings run. Its fixed cost is what it pays once,
measured piece by piece with timestamps (a callback Keras's fit is given, and the clock around
graphs.compiled), never as a difference of whole epochs, which varies by more than the cost:

  model     clearing the session, building the model and compiling it (or taking a kept one back
            and resetting it): from the call to graphs.compiled's return
  datasets  from there to fit's start: the augmenter and the tf.data pipelines
  to step   from fit's start to its first batch: data adapter, iterators, callbacks
  trace     the first batch's time minus the median batch's: tracing and optimizing the train step
  val       the first validation's time minus the second's: tracing the test step
  end       from fit's return to common.train's: early stopping's restore, the history

The first training of the process also starts TensorFlow's runtime; it is shown apart and left
out of the medians. The old measure (whole call minus 2 x the second epoch) is printed beside it.

Every training has seed 0, as the trials of a search share its --seed. Three kinds of training:
  fresh     every training builds, compiles and traces its own model (no reuse)
  reuse     a search's trainings: compiled models are reused (graphs.compiled); the
            trainings differ in learning rate, decay and batch size, as a grid's do. A decay of 0
            and one above 0 are two graphs, so the first training of each finds nothing to
            reuse: the table shows those apart from the ones that found a kept model
  new-arch  reuse allowed, but every training has another number of hidden units, as random
            and Bayesian candidates do: nothing to reuse, the train step is traced once

    python bench/fixed_cost.py --data-dir ../shared/beans                  # 64x64, 6 trainings each
    python bench/fixed_cost.py --data-dir ../shared/beans --image-size 32 --trainings 8
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cli  # noqa: E402
import common  # noqa: E402

KINDS = ("fresh", "reuse", "new-arch")


def hparams(kind, i):
    """The i-th training's hyperparameters: BN, 3 blocks; what varies depends on the kind."""
    lrs, decays, batches = (1e-3, 3e-3, 2e-3), (0.0, 0.1, 0.0, 0.3), (32, 32, 64)
    hp = common.HParams(batch_norm=True, epochs=2, patience=2, learning_rate=lrs[i % 3], batch_size=batches[i % 3])
    if kind == "new-arch":
        return common.HParams(**{**hp.to_dict(), "units": 40 + 7 * i})
    return common.HParams(**{**hp.to_dict(), "decay": decays[i % 4] if kind == "reuse" else 0.0,
                             "units": 64})


PHASES = ("model", "datasets", "to step", "trace", "val", "end")


class Clock:
    """Timestamps of one training: around graphs.compiled, fit's start and return, and every
    batch and validation (a keras callback added to fit's)."""

    def __init__(self):
        self.marks, self.batches, self.tests = {}, [], []

    def callback(self):
        import keras

        clock = self

        class Probe(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                clock.batch_start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                clock.batches.append(time.perf_counter() - clock.batch_start)
                clock.marks.setdefault("first batch start", clock.batch_start)

            def on_test_begin(self, logs=None):
                clock.test_start = time.perf_counter()

            def on_test_end(self, logs=None):
                clock.tests.append(time.perf_counter() - clock.test_start)

        return Probe()

    def phases(self):
        m = self.marks
        steady = statistics.median(self.batches[len(self.batches) // 2:])  # the second epoch's batches
        return {"model": m["compiled"] - m["call"], "datasets": m["fit"] - m["compiled"],
                "to step": m["first batch start"] - m["fit"], "trace": self.batches[0] - steady,
                "val": self.tests[0] - self.tests[1], "end": m["return"] - m["fit returned"]}


def probed(clock):
    """Patches graphs.compiled and keras.Model.fit to mark the clock; returns the undo."""
    import graphs
    import keras

    compiled, fit = graphs.compiled, keras.Model.fit

    def timed_compiled(*args, **kwargs):
        model = compiled(*args, **kwargs)
        clock.marks["compiled"] = time.perf_counter()
        return model

    def timed_fit(self, *args, callbacks=None, **kwargs):
        clock.marks["fit"] = time.perf_counter()
        try:
            return fit(self, *args, callbacks=[*(callbacks or []), clock.callback()], **kwargs)
        finally:
            clock.marks["fit returned"] = time.perf_counter()

    graphs.compiled, keras.Model.fit = timed_compiled, timed_fit

    def undo():
        graphs.compiled, keras.Model.fit = compiled, fit
    return undo


def one(kind, i, beans):
    """One training: (whole seconds, the old fixed-cost estimate, its second epoch, phases, whether
    a compiled model of the same graph was kept from an earlier training)."""
    ends = []  # when each epoch ended (its line is logged then)

    def log(line):
        ends.append(time.perf_counter())

    import graphs

    hp = hparams(kind, i)
    eager = os.environ.get(common.EAGER_ENV) == "1"
    kept = kind != "fresh" and graphs.graph_key(hp, beans.image_size, beans.train.num_classes, eager) in graphs._cache()
    clock = Clock()
    undo = probed(clock)
    try:
        clock.marks["call"] = start = time.perf_counter()
        common.train(hp, beans.train, beans.validation, seed=0, log=log,
                     plan=graphs.Plan(reuse=kind != "fresh"))
        clock.marks["return"] = time.perf_counter()
    finally:
        undo()
    total = clock.marks["return"] - start
    second = ends[1] - ends[0]  # an epoch at full speed, validation and callbacks included
    return total, total - 2 * second, second, clock.phases(), kept


def spread(values):
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=cli.number(int, 8, 512), default=64)
    parser.add_argument("--trainings", type=cli.number(int, 2, 100), default=6, help="per kind (default: 6)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma list of {', '.join(KINDS)}")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    if set(kinds) - set(KINDS):
        parser.error(f"--kinds: one of {', '.join(KINDS)}")
    beans = common.Beans(args.data_dir, image_size=args.image_size)
    beans.train, beans.validation  # decoded before any timing  # noqa: B018
    print(f"fixed_cost.py: {args.image_size}x{args.image_size}, BN, 3 blocks, 2 epochs per training, "
          f"{args.trainings} trainings per kind, one process", flush=True)
    first = one("fresh", 0, beans)
    print(f"first training of the process (TensorFlow starts): {first[0]:.2f} s, fixed "
          f"{sum(first[3].values()):.2f} s ({', '.join(f'{k} {v:.2f}' for k, v in first[3].items())})", flush=True)
    rows = []
    for kind in kinds:
        results = [one(kind, i, beans) for i in range(1, args.trainings + 1)]
        for i, (total, old, epoch, phases, kept) in enumerate(results, 1):
            print(f"  {kind:8s} {i}: whole {total:.2f} s, epoch {epoch:.2f} s, fixed {sum(phases.values()):.2f} s "
                  f"({', '.join(f'{k} {v:.2f}' for k, v in phases.items())}; whole - 2 epochs {old:.2f})"
                  + ("  [kept model]" if kept else ""), flush=True)
        groups = {kind: results} if kind == "fresh" else {
            f"{kind}, {label}": [r for r in results if r[4] == kept]
            for label, kept in (("kept model", True), ("first of its graph", False))}
        for label, group in groups.items():
            if group:
                rows.append([label, len(group), spread([r[0] for r in group]), spread([r[2] for r in group]),
                             *(spread([r[3][p] for r in group]) for p in PHASES),
                             spread([sum(r[3].values()) for r in group]), spread([r[1] for r in group])])
    import outputs

    print()
    print(outputs.format_table(["kind", "n", "whole s", "epoch s", *PHASES, "fixed cost s", "whole - 2 epochs s"],
                               rows))
    print("(median [min-max] over the trainings of each kind; seconds; every training has seed 0, as a search's "
          "trials share its --seed)")

if __name__ == "__main__":
    main()
