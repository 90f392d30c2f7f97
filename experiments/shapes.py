"""A generated image folder to try the scripts on your own data's path (not a benchmark): K
classes of coloured shapes (disc, square, horizontal bar, vertical bar, cross, ring), each at a
random place and size on a noisy background, in a colour drawn around its class's hue, written
as DIR/train/<shape>/*.png only, so that validation/ and test/ are carved from train/.

    python experiments/shapes.py runs/shapes5 --classes 5
    python train_bn.py --data-dir runs/shapes5 --image-size 32 --epochs 5
"""

import argparse
import colorsys
import sys
from pathlib import Path

import numpy as np

SHAPES = ("bar_h", "bar_v", "cross", "disc", "square", "ring")


def draw(name, size, rng, hue):
    from PIL import Image, ImageDraw

    image = Image.fromarray(rng.normal(110, 30, (size, size, 3)).clip(0, 255).astype(np.uint8))
    pen = ImageDraw.Draw(image)
    colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb((hue + rng.normal(0, 0.04)) % 1, 0.8,
                                                             rng.uniform(0.6, 1.0)))
    r = int(rng.integers(size // 6, size // 3))
    x, y = (int(v) for v in rng.integers(r, size - r, 2))
    bar = max(2, size // 16)
    if name == "disc":
        pen.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    elif name == "ring":
        pen.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=bar)
    elif name == "square":
        pen.rectangle([x - r, y - r, x + r, y + r], fill=colour)
    elif name == "bar_h":
        pen.rectangle([x - r, y - bar, x + r, y + bar], fill=colour)
    elif name == "bar_v":
        pen.rectangle([x - bar, y - r, x + bar, y + r], fill=colour)
    else:  # cross
        pen.rectangle([x - r, y - bar, x + r, y + bar], fill=colour)
        pen.rectangle([x - bar, y - r, x + bar, y + r], fill=colour)
    return image


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where to write (must not exist yet)")
    parser.add_argument("--classes", type=int, default=5, choices=range(2, len(SHAPES) + 1), metavar="K",
                        help=f"how many classes, 2 to {len(SHAPES)} (default: 5)")
    parser.add_argument("--per-class", type=int, default=60, help="images per class (default: 60)")
    parser.add_argument("--size", type=int, default=48, help="image side in pixels (default: 48)")
    parser.add_argument("--seed", type=int, default=26)
    args = parser.parse_args(argv)
    if args.folder.exists():
        parser.error(f"{args.folder} exists; choose a new folder")
    if args.per_class < 3 or args.size < 16:
        parser.error("--per-class must be at least 3 and --size at least 16")
    rng = np.random.default_rng(args.seed)
    names = SHAPES[:args.classes]
    for k, name in enumerate(names):
        folder = args.folder / "train" / name
        folder.mkdir(parents=True)
        for i in range(args.per_class):
            draw(name, args.size, rng, k / len(names)).save(folder / f"{name}_{i:03d}.png")
    print(f"{args.per_class * len(names)} images of {len(names)} classes in {args.folder / 'train'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
