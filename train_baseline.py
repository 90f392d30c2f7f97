"""Train the beans CNN without BatchNormalization; report validation and test accuracy.

    python train_baseline.py --data-dir ../shared/beans
"""

import sys

from beans_tune.scripts import train_baseline as main

if __name__ == "__main__":
    sys.exit(main())
