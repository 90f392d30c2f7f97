"""Train the beans CNN with BatchNormalization between each linear layer and its ReLU.

    python train_bn.py --data-dir ../shared/beans            # the BN model
    python train_bn.py --data-dir ../shared/beans --compare  # and the baseline beside it
"""

import sys

from beans_tune.scripts import train_bn as main

if __name__ == "__main__":
    sys.exit(main())
