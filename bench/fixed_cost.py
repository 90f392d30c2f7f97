"""Benchmark (not a test): the fixed cost of one training, what it pays beyond its epochs.

Each training runs 2 epochs of the BN model on the beans train split (validation each epoch), in
one process, one after another as a search's trainings run. Its fixed cost is its whole
`common.train` call minus 2 x its second epoch (an epoch at full speed, validation included):
clearing the session, building and compiling the model, the datasets, and tracing and
optimizing the train and test steps on their first call. The first training of the process also
starts TensorFlow's runtime; it is shown apart and left out of the medians.

Three kinds of training:
  fresh     every training builds, compiles and traces its own model (no reuse)
  reuse     a search's trainings: compiled models are reused (graphs.compiled); the
            trainings differ in learning rate, decay and batch size, as a grid's do
  new-arch  reuse allowed, but every training has another number of hidden units, as random
            and Bayesian candidates do: nothing to reuse, the train step is traced once

    python bench/fixed_cost.py --data-dir ../shared/beans                  # 64x64, 6 trainings each
    python bench/fixed_cost.py --data-dir ../shared/beans --image-size 32 --trainings 8
"""

import argparse
import inspect
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


def one(kind, i, beans):
    ends = []  # when each epoch ended (its line is logged then)

    def log(line):
        ends.append(time.perf_counter())

    kwargs = {}
    if "plan" in inspect.signature(common.train).parameters:  # absent before graphs.py existed
        import graphs

        kwargs["plan"] = graphs.Plan(reuse=kind != "fresh")
    start = time.perf_counter()
    common.train(hparams(kind, i), beans.train, beans.validation, seed=i, log=log, **kwargs)
    total = time.perf_counter() - start
    second = ends[1] - ends[0]  # an epoch at full speed, validation and callbacks included
    return total, total - 2 * second, second


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
    print(f"first training of the process (TensorFlow starts): {first[0]:.2f} s, fixed {first[1]:.2f} s", flush=True)
    rows = []
    for kind in kinds:
        results = [one(kind, i, beans) for i in range(1, args.trainings + 1)]
        for i, (total, fixed, epoch) in enumerate(results, 1):
            print(f"  {kind:8s} {i}: whole {total:.2f} s, epoch {epoch:.2f} s, fixed {fixed:.2f} s", flush=True)
        rows.append([kind, spread([r[0] for r in results]), spread([r[2] for r in results]),
                     spread([r[1] for r in results])])
    import outputs

    print()
    print(outputs.format_table(["kind", "whole training s", "steady epoch s", "fixed cost s"], rows))


if __name__ == "__main__":
    main()
