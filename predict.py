"""Classify images with a model a training or a search saved: the class and its probability each.

    python predict.py runs/train_bn-.../model.keras leaf1.jpg leaf2.jpg
"""

import sys

from beans_tune.predict import main

if __name__ == "__main__":
    sys.exit(main())
