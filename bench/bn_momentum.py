"""Benchmark (not a test): how BatchNormalization's momentum affects validation stability.

With ~33 training steps per epoch, Keras's default momentum 0.99 leaves BN's moving
statistics (used at inference) far behind the weights. This trains the BN model for a
fixed number of epochs (no early stopping) at several momenta and prints, per momentum,
the best and final validation accuracy and the mean epoch-to-epoch swing of it.

    python bench/bn_momentum.py --data-dir ../shared/beans
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import common  # noqa: E402
import outputs  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--momenta", default="0.99,0.9,0.8")
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args(argv)
    beans = common.Beans(args.data_dir, image_size=args.image_size)
    rows = []
    for momentum in [float(m) for m in args.momenta.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            hp = common.HParams(batch_norm=True, bn_momentum=momentum, epochs=args.epochs,
                                patience=args.epochs)
            result = common.train(hp, beans.train, beans.validation, seed=seed, log=None)
            val = np.array(result.history["val_accuracy"])
            swing = np.abs(np.diff(val[len(val) // 2:])).mean()  # second half: past warm-up
            rows.append((momentum, seed, f"{val.max():.3f}", f"{val[-1]:.3f}", f"{swing:.3f}",
                         f"{val[len(val) // 2:].min():.3f}"))
            print(f"momentum {momentum}  seed {seed}  best {val.max():.3f}  final {val[-1]:.3f}  "
                  f"mean |d val_acc| {swing:.3f}", flush=True)
    print(outputs.format_table(
        ["bn_momentum", "seed", "best val_acc", "final val_acc", "mean |d val_acc| (2nd half)",
         "min val_acc (2nd half)"], rows))


if __name__ == "__main__":
    main()
