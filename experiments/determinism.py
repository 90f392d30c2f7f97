"""Benchmark (not a test): is a training reproducible, and what does TensorFlow's op determinism
change and cost?

Trains the BN model with the same seed several times, each in a fresh process, with and without
`tf.config.experimental.enable_op_determinism()` and with TensorFlow's default thread pools or
one thread (a stand-in for another machine: a different core count changes how sums are split
and so their rounding). Prints, per setting, the first epoch's training loss to the last digit,
whether every epoch's loss matches the first run's exactly, the largest difference from the
reference run, the best validation accuracy and the seconds per epoch.

    python experiments/determinism.py --data-dir ../shared/beans
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from beans_tune import cli, outputs

# One training in a fresh process: op determinism and thread pools are set before TensorFlow
# runs anything, which only a new process guarantees.
CHILD = """
import json, time
import tensorflow as tf
if {threads}:
    tf.config.threading.set_intra_op_parallelism_threads({threads})
    tf.config.threading.set_inter_op_parallelism_threads({threads})
if {deterministic}:
    tf.config.experimental.enable_op_determinism()
from beans_tune.hparams import HParams
from beans_tune.images import Beans
from beans_tune.training import train
beans = Beans({data_dir!r}, image_size={image_size})
hp = HParams(batch_norm=True, epochs={epochs}, patience={epochs})
start = time.perf_counter()
result = train(hp, beans.train, beans.validation, seed=0, log=None)
print(json.dumps({{"loss": [float(v) for v in result.history["loss"]],
                   "val_accuracy": [float(v) for v in result.history["val_accuracy"]],
                   "seconds": time.perf_counter() - start}}))
"""


def train_once(args, deterministic, threads):
    code = CHILD.format(threads=threads, deterministic=deterministic, data_dir=args.data_dir,
                        image_size=args.image_size, epochs=args.epochs)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"determinism.py: a training failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=cli.number(int, 8, 512), default=64)
    parser.add_argument("--epochs", type=cli.number(int, 1, 1000), default=5)
    parser.add_argument("--repeats", type=cli.number(int, 1, 100), default=2)
    args = parser.parse_args(argv)
    if empty := cli.empty_folder_flag(args):
        parser.error(empty)
    if args.data_dir and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir: {args.data_dir} is not a folder")
    settings = [(False, 0, args.repeats), (True, 0, args.repeats), (False, 1, 1), (True, 1, 1)]
    reference, rows = None, []
    for deterministic, threads, repeats in settings:
        for repeat in range(repeats):
            run = train_once(args, deterministic, threads)
            reference = reference or run
            same = run["loss"] == reference["loss"]
            diff = max(abs(a - b) for a, b in zip(run["loss"], reference["loss"]))
            row = ["on" if deterministic else "off", threads or "default", repeat + 1, f"{run['loss'][0]:.10f}",
                   "yes" if same else "no", f"{diff:.2e}", f"{max(run['val_accuracy']):.4f}",
                   f"{run['seconds'] / args.epochs:.2f}"]
            rows.append(row)
            print("  ".join(str(c) for c in row), flush=True)
    print()
    print(outputs.format_table(["op determinism", "threads", "run", "epoch-1 loss", "all losses = run 1",
                                "max |loss - run 1|", "best val_acc", "s/epoch"], rows))


if __name__ == "__main__":
    main()
