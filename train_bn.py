"""Train the beans CNN with BatchNormalization between each linear layer and its ReLU.

    python train_bn.py --data-dir ../shared/beans            # the BN model
    python train_bn.py --data-dir ../shared/beans --compare  # plus the baseline, same seed and
                                                             # hyperparameters; one table, one figure
"""

import sys

import cli
import train_script


def main(argv=None):
    return cli.run_cli(lambda a: train_script.run_training(a, "train_bn", batch_norm=True),
                       argv, "train_bn.py")


if __name__ == "__main__":
    sys.exit(main())
