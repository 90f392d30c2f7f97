"""predict.py: the class and its probability for each image given, from a model a training or a
search saved. The saved model resizes and scales raw images itself; the class names come from the
metrics.json (training) or best.json (search) written beside it.

    python predict.py runs/train_bn-.../model.keras leaf1.jpg leaf2.jpg
"""

import json
import os
from pathlib import Path

from . import cli, outputs
from .hparams import UsageError

SUMMARIES = ("metrics.json", "best.json")  # what train_*.py and tune_*.py write beside model.keras


def parser():
    parser = cli.ArgumentParser(prog="predict.py", description="Classify images with a saved beans model.")
    parser.add_argument("model", help="a model.keras a training or a search wrote, or the folder holding it")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP or GIF), any size")
    return parser


def class_names(model_path):
    for name in SUMMARIES:
        summary = model_path.parent / name
        if summary.is_file():
            try:
                classes = json.loads(summary.read_text())["classes"]
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise UsageError(f"{summary}: no class names in it ({type(err).__name__}: {err})") from None
            if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
                raise UsageError(f"{summary}: its classes are not a list of 2 or more names")
            return classes
    raise UsageError(f"no {' or '.join(SUMMARIES)} beside {model_path} names its classes")


def load(model_path):
    import keras

    try:
        model = keras.saving.load_model(model_path)
    except Exception as err:  # Keras raises several kinds for a file that is not a model
        raise UsageError(f"{model_path}: not a Keras model ({type(err).__name__})") from None
    if tuple(model.input_shape[1:3]) != (None, None):
        raise UsageError(f"{model_path} takes preprocessed {model.input_shape[1]}x{model.input_shape[2]} images "
                         "(saved before beans-tune 0.4); train it again to classify raw images")
    return model


def read_image(path):
    """The decoded RGB pixels (0-255) as float32, by TensorFlow's decoder as training's images were:
    another JPEG decoder (PIL's) moves pixels by a level or two, and a prediction with them."""
    import tensorflow as tf

    try:
        with open(path, "rb") as handle:  # Python's open: any file name the system takes
            data = handle.read()
    except OSError as err:
        raise UsageError(f"{path}: cannot be read ({err.strerror or type(err).__name__})") from None
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.OpError, ValueError) as err:
        raise UsageError(f"{path}: not an image ({type(err).__name__})") from None
    return tf.cast(image, tf.float32).numpy()


def predict(argv):
    args = parser().parse_args(argv)
    model_path = Path(args.model)
    model_path = model_path / "model.keras" if model_path.is_dir() else model_path
    if not model_path.is_file():
        inside = [f"{d.name}/" for d in (model_path.parent.iterdir() if model_path.parent.is_dir() else [])
                  if (d / "model.keras").is_file()]
        hint = f" (it holds {' and '.join(sorted(inside))}: name one)" if inside else ""
        raise UsageError(f"{model_path}: no such model file{hint}")
    classes = class_names(model_path)
    pictures = [read_image(path) for path in args.images]  # every image is checked before the first prediction
    model = load(model_path)
    if model.output_shape[-1] != len(classes):
        raise UsageError(f"{model_path} has {model.output_shape[-1]} outputs, its summary {len(classes)} classes")
    rows = []
    for path, picture in zip(args.images, pictures):
        probabilities = model.predict(picture[None], verbose=0)[0]
        best = int(probabilities.argmax())
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")  # a name in another encoding prints too
        rows.append([shown, classes[best], f"{probabilities[best]:.4f}"])
    print(outputs.format_table(["image", "class", "probability"], rows))


def main(argv=None):
    return cli.run_cli(predict, argv, "predict.py")
