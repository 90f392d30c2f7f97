"""Train the beans CNN without BatchNormalization and report validation and test accuracy.

    python train_baseline.py --data-dir ../shared/beans
"""

import sys

import cli
import train_script


def main(argv=None):
    return cli.run_cli(lambda a: train_script.run_training(a, "train_baseline", batch_norm=False),
                       argv, "train_baseline.py")


if __name__ == "__main__":
    sys.exit(main())
