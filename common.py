"""The lecture's core, shared by every script: the hyperparameter dataclass, the beans data,
the CNN with optional BatchNormalization, its optimizer and schedule, `train` and `evaluate`.

Nothing here runs at import time except setting TensorFlow's log level; TensorFlow itself is
imported by the functions that need it. The scripts are thin `main(argv=None)` wrappers, e.g.

    python train_bn.py --data-dir ../shared/beans --compare

Data comes from `tfds.load("beans")`, or, with `--data-dir DIR` / `BEANS_DATA_DIR`, from any
folder laid out `train[|validation|test]/<class>/*.jpg` read by TFDS's own
`tfds.folder_dataset.ImageFolder` (a missing validation/ or test/ is carved from train/; see
docs/data.md). Images are decoded and resized once per process into numpy arrays; training
batches are then drawn from those arrays through tf.data.
"""

import dataclasses
import hashlib
import math
import numbers
import os
import pkgutil
import socket
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's start-up chatter

import numpy as np  # noqa: E402

# beans' classes, TFDS label ids 0, 1, 2: the default data's (a folder's are its train/ subfolders)
CLASS_NAMES = ("angular_leaf_spot", "bean_rust", "healthy")
SCHEDULES = ("inverse-time", "cosine")  # learning-rate schedules (learning_rate_schedule)
SPLITS = ("train", "validation", "test")
DATA_ENV = "BEANS_DATA_DIR"
# "1": Keras runs each step eagerly instead of tracing it into a graph first (Keras's default).
# Tracing costs seconds per training whatever its size: the test suite, which trains hundreds of
# tiny models, sets it (docs/development.md, "Tests").
EAGER_ENV = "BEANS_RUN_EAGERLY"
# tfds.load("beans") downloads from this host; probed first so that an offline machine
# fails in seconds instead of retrying for minutes.
TFDS_HOST = ("storage.googleapis.com", 443)


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit code 2."""


# --------------------------------------------------------------------------------------
# Hyperparameters
# --------------------------------------------------------------------------------------


def _hp(default, why, low=None, high=None, low_open=False, high_open=False):
    """A hyperparameter: its default, why that default, and its sane range (in --help too)."""
    return field(default=default, metadata={"help": why, "low": low, "high": high, "low_open": low_open,
                                            "high_open": high_open})


def describe_range(name):
    """'[0, 1)', '(0, 10]', ... for a numeric HParams field; '' otherwise."""
    meta = _FIELDS[name].metadata
    if meta["low"] is None:
        return ""
    return (f"{'(' if meta['low_open'] else '['}{meta['low']:g}, {meta['high']:g}"
            f"{')' if meta['high_open'] else ']'}")


@dataclass(frozen=True)
class HParams:
    """Everything `train` needs besides the data. Flags are derived from these fields."""

    # Upper bounds are far beyond anything useful on beans; they exist so that a typo (an extra
    # zero) is refused in one line instead of exhausting memory or running for days.
    learning_rate: float = _hp(1e-3, "alpha; Adam's usual starting point, the first thing to tune",
                               0, 10, low_open=True)
    momentum: float = _hp(0.9, "beta of SGD with momentum: averages over about 10 steps", 0, 1, high_open=True)
    beta_1: float = _hp(0.9, "Adam's first-moment beta: the paper's default, rarely tuned", 0, 1,
                        high_open=True)
    beta_2: float = _hp(0.999, "Adam's second-moment beta: the paper's default", 0, 1, high_open=True)
    epsilon: float = _hp(1e-7, "Adam's epsilon: Keras's default, only guards the division", 0, 1, low_open=True)
    layers: int = _hp(3, "conv blocks: 3 halvings take 64x64 inputs to 8x8 feature maps", 1, 8)
    units: int = _hp(64, "hidden units of the dense layer: ample for a few classes", 1, 4096)
    decay: float = _hp(0.0, "learning-rate decay, alpha/(1+decay*epoch); 0 keeps alpha fixed", 0, 100)
    schedule: str = _hp("inverse-time", "inverse-time (alpha/(1+decay*epoch)) or cosine (alpha*(1+cos(pi*t/epochs))/2, "
                                        "every step, to 0 at the last epoch; takes no decay)")
    batch_size: int = _hp(32, "mini-batch size: 33 steps per epoch over beans' 1,034 train images", 1, 1024)
    optimizer: str = _hp("adam", "adam or sgd (SGD with momentum)")
    epochs: int = _hp(40, "upper bound: the baseline still improved at epoch 20 (~2.3 s/epoch at 64x64)",
                      1, 1000)
    patience: int = _hp(8, "epochs without a better validation accuracy before stopping; BN's "
                           "validation accuracy dips for an epoch or two", 0, 1000)
    batch_norm: bool = _hp(False, "BatchNormalization between each linear layer and its ReLU")
    bn_momentum: float = _hp(0.6, "BN moving-statistics momentum: best of 0.99/0.9/0.8/0.6 measured "
                                  "by studies/bn_inference.py; 0.99 lags at ~33 steps/epoch", 0, 1, high_open=True)
    augment: bool = _hp(False, "random flips and small rotations of training images")

    def __post_init__(self):
        problems = [p for p in (_out_of_range(f, getattr(self, f.name)) for f in fields(self)) if p]
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        elif self.schedule == "cosine" and self.decay:
            problems.append(f"decay belongs to the inverse-time schedule; cosine decays to 0 by itself, "
                            f"give decay 0 (got {self.decay:g})")
        if problems:
            raise UsageError("; ".join(problems))

    def to_dict(self):
        return dataclasses.asdict(self)


HPARAM_NAMES = tuple(f.name for f in fields(HParams))
_FIELDS = {f.name: f for f in fields(HParams)}


def _out_of_range(f, value):
    """Why `value` is no value of numeric field `f`, or None."""
    meta, name = f.metadata, f.name
    if meta.get("low") is None:
        return None
    low, high, low_open, high_open = meta["low"], meta["high"], meta["low_open"], meta["high_open"]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{name} must be a number, got {value!r}"
    if not math.isfinite(value):
        return f"{name} must be a finite number, got {value}"
    if f.type is int and value != int(value):
        return f"{name} must be an integer, got {value}"
    if high_open and not low_open:  # [low, high): the betas and momenta
        return None if low <= value < high else f"{name} must be in {describe_range(name)}, got {value}"
    what = "an integer " if f.type is int else ""
    if value < low or (low_open and value == low):
        return f"{name} must be {what}{'>' if low_open else '>='} {low:g}, got {value}"
    if value > high or (high_open and value == high):
        return f"{name} must be {what}{'<' if high_open else '<='} {high:g}, got {value}"
    return None


def hparam_type(name):
    return _FIELDS[name].type


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """One decoded split: images in [0, 1], float32 (N, S, S, 3); integer labels (N,); the class
    names, a label id being its class's index (empty for arrays made by hand: then one class per
    label id up to the highest)."""

    x: np.ndarray
    y: np.ndarray
    files: tuple = ()
    classes: tuple = ()

    def __len__(self):
        return len(self.y)

    @property
    def num_classes(self):
        """The classes a model of this data predicts among (its softmax's width)."""
        if self.classes:
            return len(self.classes)
        return int(self.y.max()) + 1 if len(self.y) else 0


def resolve_data_dir(data_dir):
    """--data-dir, else $BEANS_DATA_DIR, else None (tfds.load)."""
    chosen = data_dir or os.environ.get(DATA_ENV) or None
    return Path(chosen) if chosen else None


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # what tfds.folder_dataset.ImageFolder reads
READABLE_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I"}
# A folder without validation/ or test/ gets each from train/: this share of every class's train
# images (rounded down, at least 1), drawn with this seed. The seed is fixed, not --seed: the
# test split must be the same images in every run, and no flag may re-roll it until a model
# scores well on it (docs/data.md).
CARVE_PERCENT = 10
CARVE_SEED = 0
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "tests": "test"}  # named when they go unread


def class_folders(split_dir):
    """The class subfolders of a split folder, sorted (label id = index); hidden ones skipped."""
    return tuple(sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")))


def _check_names(root):
    """TFDS's ImageFolder lists the folder, its split folders and their class folders as UTF-8:
    a name that is not (bytes from another system's encoding) is refused here, by name."""
    def walk(folder, depth):
        for entry in folder.iterdir():
            try:
                entry.name.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(f"file name not in UTF-8: {os.fsencode(entry)!r}; rename it") from None
            if depth and entry.is_dir():
                walk(entry, depth - 1)

    walk(root, 2)


def check_folder(root, splits=SPLITS):
    """Checks layout and image headers of an image folder; returns {split: [files]} of the
    splits in `splits` that it holds (train/ it must hold).

    The classes are the class subfolders of train/: at least 2, each with images; a
    validation/ or test/ that exists holds exactly the same class folders. Header checks are
    cheap (no pixels decoded), so a bad file anywhere, test split included, is reported before
    any training starts."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UsageError(f"data folder {root} is not a folder")
    if not root.is_dir():
        raise UsageError(f"data folder not found: {root}")
    _check_names(root)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise UsageError(f"missing split folder: {train_dir}" if not train_dir.exists() else
                         f"{train_dir} is not a folder")
    classes = class_folders(train_dir)
    if len(classes) < 2:
        raise UsageError(f"{train_dir} holds {len(classes)} class folder{'s' if len(classes) != 1 else ''}"
                         f"{': ' + classes[0] if classes else ''}; a classifier needs at least 2 (one subfolder "
                         "of images per class)")
    found = {}
    for split in splits:
        split_dir = root / split
        if split != "train" and not split_dir.exists():
            continue  # carved from train/ (read_folder)
        if not split_dir.is_dir():
            raise UsageError(f"{split_dir} is not a folder")
        here = class_folders(split_dir)
        if here != classes:
            missing, extra = [c for c in classes if c not in here], [c for c in here if c not in classes]
            raise UsageError(f"class folders of {split_dir} differ from {train_dir}'s: "
                             + "; ".join([*([f"missing {', '.join(missing)}"] if missing else []),
                                          *([f"unexpected {', '.join(extra)}"] if extra else [])]))
        _check_listed(split_dir)
        found[split] = [path for name in classes for path in _check_images(split_dir / name)]
    return found


def _image_named(path):
    """Whether ImageFolder takes `path` for an image: its name ends in an image suffix, any case
    (".jpg" alone too, which Path.suffix does not see)."""
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def _check_listed(split_dir):
    """ImageFolder reads every entry with an image's name in every folder of a split, hidden
    class folders (.ipynb_checkpoints) and hidden names included: each must be a regular file (a
    folder fails its read, a named pipe blocks it forever)."""
    for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for path in sorted(p for p in folder.iterdir() if _image_named(p)):
            if not path.is_file():
                what = ("a folder" if path.is_dir() else "a broken link" if path.is_symlink() else "a special file")
                raise UsageError(f"{path} is {what} with an image's name: rename or remove it")


def _check_images(folder):
    """The sorted images of a class folder, their headers read; at least one. Hidden files are
    no images: macOS leaves `._name.jpg` (AppleDouble metadata) beside each image it copies to
    another file system. ImageFolder lists them too; _load_folder_split drops every file not
    returned here before decoding."""
    from PIL import Image, UnidentifiedImageError

    images = sorted(p for p in folder.iterdir() if _image_named(p) and not p.name.startswith("."))  # files: _check_listed
    if not images:
        raise UsageError(f"no .jpg/.jpeg/.png images in {folder}")
    for path in images:
        try:
            with Image.open(path) as image:
                fmt, mode = image.format, image.mode
        except (UnidentifiedImageError, OSError) as err:
            raise UsageError(f"not a readable image: {path} ({err.__class__.__name__})") from None
        if fmt not in ("JPEG", "PNG"):
            raise UsageError(f"unsupported image format {fmt} (want JPEG or PNG): {path}")
        if mode not in READABLE_MODES:
            raise UsageError(f"unsupported image mode {mode}: {path}")
    return images


@dataclass(frozen=True)
class Folder:
    """A checked image folder: its classes (train/'s class subfolders, sorted), the files of
    every split, and the splits carved from train/ because their folder is missing."""

    root: Path
    classes: tuple
    files: dict          # {split: (Path, ...)}, every split in SPLITS
    carved: tuple = ()   # e.g. ("validation",): read from ImageFolder's train split

    def labels(self, split):
        return np.array([self.classes.index(f.parent.name) for f in self.files[split]], np.int64)


def read_folder(root):
    """check_folder, then each missing validation/ or test/ carved from train/ (carve)."""
    root = Path(root)
    found = {split: tuple(files) for split, files in check_folder(root).items()}
    classes = class_folders(root / "train")
    missing = tuple(s for s in SPLITS if s not in found)
    if not missing:
        return Folder(root, classes, found)
    return Folder(root, classes, {**found, **carve(root / "train", found["train"], classes, missing)}, missing)


def carve(train_dir, files, classes, missing):
    """{split: files} of train and the `missing` splits, dealt from each class's train files, CARVE_PERCENT of the
    class each (rounded down, at least 1, test first), the rest left in train; the draw depends
    on CARVE_SEED and the file names only (never --seed)."""
    dealt = {s: [] for s in ("train", *missing)}
    for name in classes:
        members = sorted(f for f in files if f.parent.name == name)
        share = max(1, len(members) * CARVE_PERCENT // 100)
        if len(members) < share * len(missing) + 1:
            raise UsageError(f"cannot carve {' and '.join(f'{s}/' for s in missing)} from {train_dir / name}: it "
                             f"holds {len(members)} image{'s' if len(members) != 1 else ''}, at least "
                             f"{len(missing) + 1} needed (1 per carved split, 1 left to train on); add images or "
                             f"the {' and '.join(f'{s}/' for s in missing)} folder")
        # each image's place is a hash of its class and file name: adding a class or an image
        # leaves the other images where they were (a permutation would deal them all again)
        order = sorted(range(len(members)), key=lambda i: hashlib.sha256(
            f"{CARVE_SEED}:{name}/{members[i].name}".encode("utf-8", "surrogateescape")).hexdigest())
        start = 0
        for split in sorted(missing, key=("test", "validation").index):  # test/ is the same whether validation/ exists
            dealt[split].extend(members[i] for i in order[start:start + share])
            start += share
        dealt["train"].extend(members[i] for i in order[start:])
    return {s: tuple(sorted(files, key=lambda f: (classes.index(f.parent.name), f))) for s, files in dealt.items()}


def find_undecodable(files):
    """Fully decodes each file with Pillow; returns (path, reason) of the first bad one."""
    from PIL import Image

    for path in files:
        try:
            with Image.open(path) as image:
                image.load()
        except Exception as err:  # noqa: BLE001 - any decoding failure is the answer
            return path, str(err) or err.__class__.__name__
    return None


def stratified_indices(labels, limit, seed):
    """At most `limit` indices, class proportions kept, every class represented."""
    labels = np.asarray(labels)
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    share = np.maximum(1, np.floor(counts / counts.sum() * limit)).astype(int)
    while share.sum() > limit and (share > 1).any():  # a rare class's 1 came from a common one
        share[np.argmax(share)] -= 1
    while share.sum() < limit and (share < counts).any():  # hand out the remainder
        share[np.argmax((counts - share) / counts)] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), size=min(s, n), replace=False)
              for c, s, n in zip(classes, share, counts)]
    return np.sort(np.concatenate(chosen))


def _to_arrays(ds, image_size):
    import tensorflow as tf

    def prepare(image, label, name):
        image = tf.image.resize(image, (image_size, image_size), antialias=True) / 255.0
        return tf.clip_by_value(image, 0.0, 1.0), label, name

    xs, ys, names = [], [], []
    for x, y, n in ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(128):
        xs.append(x.numpy())
        ys.append(y.numpy())
        names.extend(s.decode() for s in n.numpy())
    x = np.concatenate(xs).astype(np.float32) if xs else np.zeros((0, image_size, image_size, 3), np.float32)
    y = np.concatenate(ys).astype(np.int64) if ys else np.zeros((0,), np.int64)
    return x, y, names


# The modules every script needs (requirements.txt's, by import name). A broken install (a
# protobuf that tensorflow-metadata's generated code refuses, a numpy another package was not
# built for) raises anything from ImportError to TypeError on import: one line before any work.
# (tfds's folder reader is an attribute it imports on first use: the import that failed before.)
RUNTIME_MODULES = ("numpy", "scipy", "sklearn", "skopt", "matplotlib", "PIL", "tensorflow", "keras",
                   "tensorflow_datasets:folder_dataset.ImageFolder")


def check_installed(modules=RUNTIME_MODULES):
    for name in modules:
        try:
            pkgutil.resolve_name(name)
        except Exception as err:  # noqa: BLE001 - whatever a broken install raises
            first = str(err).splitlines()[0] if str(err) else ""
            raise UsageError(f"{name.split(':')[0]} does not import ({err.__class__.__name__}: {first}); reinstall in a fresh "
                             "virtual environment: pip install -r requirements.txt") from None


def _load_folder_split(root, split, files, labels, classes, image_size):
    """Decodes `files` (labelled `labels`) from ImageFolder's `split` of `root`."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds.folder_dataset.ImageFolder(str(root))
    # Label ids by file name: ImageFolder numbers the class folders of every folder beside train/
    # together, and its split holds images that --limit or a carve leave out (-1: dropped).
    keep = [str(f) for f in files]
    label_of = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(keep), tf.constant(np.asarray(labels, np.int64))), default_value=-1)
    # Raw bytes from ImageFolder, so that images left out are dropped before they are decoded.
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    ds = ds.map(lambda ex: (ex["image"], label_of.lookup(ex["image/filename"]), ex["image/filename"]))
    ds = ds.filter(lambda image, label, name: label >= 0)
    ds = ds.map(lambda image, label, name: (tf.io.decode_image(image, channels=3, expand_animations=False),
                                            label, name))
    try:
        x, y, got = _to_arrays(ds, image_size)
    except tf.errors.OpError as err:
        bad = find_undecodable(keep)
        if bad:
            raise UsageError(f"cannot decode image {bad[0]}: {bad[1]}") from None
        raise UsageError(f"cannot read split {split!r} of {root}: {err.message.splitlines()[0]}") from None
    if len(got) != len(keep):
        raise RuntimeError(f"ImageFolder gave {len(got)} of the {len(keep)} images asked for from {root}/{split}")
    order = np.argsort(got)  # ImageFolder's order follows the file system; make it stable
    return Split(x=x[order], y=y[order], files=tuple(got[i] for i in order), classes=classes)


def _beans_builder():
    check_installed()
    import tensorflow_datasets as tfds
    from absl import logging as absl_logging

    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # a missing dataset is expected, not a warning
    try:
        return tfds.builder("beans")
    finally:
        absl_logging.set_verbosity(level)


def _check_tfds_reachable():
    if _beans_builder().is_prepared():
        return
    try:
        socket.create_connection(TFDS_HOST, timeout=3).close()
    except OSError:
        raise UsageError(
            "cannot download the beans dataset with TFDS (no network?); pass --data-dir DIR "
            f"or set {DATA_ENV}=DIR to a folder laid out train|validation|test/<class>/*.jpg"
        ) from None


def _tfds_classes():
    return tuple(_beans_builder().info.features["label"].names)


def _tfds_labels(split):
    """The labels of a TFDS beans split, its images left undecoded."""
    import tensorflow_datasets as tfds

    ds = tfds.load("beans", split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    return np.array([label for label in ds.map(lambda ex: ex["label"]).as_numpy_iterator()], np.int64)


def _load_tfds_split(split, image_size, limit, seed, classes):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    _check_tfds_reachable()
    ds = tfds.load("beans", split=split, shuffle_files=False)
    ds = ds.enumerate().map(lambda i, ex: (ex["image"], ex["label"], tf.strings.as_string(i)))
    x, y, names = _to_arrays(ds, image_size)
    idx = stratified_indices(y, limit, seed)
    return Split(x=x[idx], y=y[idx], files=tuple(names[i] for i in idx), classes=classes)


class Beans:
    """Loads splits on demand, each decoded at most once per process.

    `Beans(data_dir)` checks a folder's layout and every image header at once, and carves a
    missing validation/ or test/ from train/ (read_folder); without a folder it is TFDS's beans.
    `classes` are the class names, a label id being the index. Pixels are decoded when a split
    is first asked for, so the test split is only decoded when the final model asks for it;
    `describe()` counts images from file lists."""

    def __init__(self, data_dir=None, image_size=64, limit=None, seed=0):
        self.data_dir = resolve_data_dir(data_dir)
        self.image_size = image_size
        self.limit = limit
        self.seed = seed
        self.folder = read_folder(self.data_dir) if self.data_dir else None
        if self.folder is None:
            _check_tfds_reachable()
        self.classes = self.folder.classes if self.folder else _tfds_classes()
        if limit is not None and limit < len(self.classes):
            raise UsageError(f"--limit {limit} is below the {len(self.classes)} classes of {self.source}: every "
                             "split needs an image of each class")
        self._cache = {}

    @property
    def source(self):
        return str(self.data_dir) if self.data_dir else "tfds.load('beans')"

    def _chosen(self, name):
        """(files, labels) of a folder's split that --limit keeps."""
        labels = self.folder.labels(name)
        idx = stratified_indices(labels, self.limit, self.seed if name != "test" else CARVE_SEED)  # test: fixed
        return [self.folder.files[name][i] for i in idx], labels[idx]

    def fingerprint(self):
        """What identifies a folder's images for a search's manifest: the classes, each split's
        image count and a hash of its file names (relative to the folder; the pixels are not
        read), so that a search resumed after images or classes changed is refused. None for TFDS."""
        import hashlib

        if not self.folder:
            return None
        names = "\n".join(f"{split}:{f.relative_to(self.data_dir).as_posix()}"
                           for split in SPLITS for f in self.folder.files[split])
        return {"classes": list(self.classes), "images": {s: len(self.folder.files[s]) for s in SPLITS},
                "names_sha256": hashlib.sha256(names.encode("utf-8", "surrogateescape")).hexdigest()}

    def counts(self, name):
        """Images of each class in split `name` (after --limit), its pixels not decoded."""
        if name in self._cache:
            labels = self._cache[name].y
        elif self.folder:
            labels = self._chosen(name)[1]
        else:
            labels = _tfds_labels(name)
            labels = labels[stratified_indices(labels, self.limit, self.seed)]
        return np.bincount(labels, minlength=len(self.classes))

    def describe(self, most=12):
        """Lines to print once when the data loads: a split carved from train/, and the classes
        with their images per split (`most` classes shown at most)."""
        lines = []
        if self.folder and self.folder.carved:
            carved = self.folder.carved
            unread = [f"{name}/" for name in SPLIT_ALIASES if (Path(self.data_dir) / name).is_dir()
                      and SPLIT_ALIASES[name] in carved]
            lines.append(f"data: {self.data_dir}: {' and '.join(f'{s}/' for s in carved)} missing: carved "
                         f"{CARVE_PERCENT}% of train/ per class{' for each' if len(carved) > 1 else ''} "
                         f"(stratified, fixed seed {CARVE_SEED})"
                         + (f"; {' and '.join(unread)} not read: only train/, validation/ and test/ are"
                            if unread else ""))
        counts = [self.counts(s) for s in SPLITS]
        shown = [f"{name} {'/'.join(str(c[i]) for c in counts)}" for i, name in enumerate(self.classes[:most])]
        more = f", ... ({len(self.classes) - most} more)" if len(self.classes) > most else ""
        lines.append(f"classes ({len(self.classes)}): {', '.join(shown)}{more} ({'/'.join(SPLITS)}; "
                     f"{'/'.join(str(c.sum()) for c in counts)} in all)")
        return lines

    def split(self, name):
        if name not in self._cache:
            check_installed()  # the heavy imports begin here: after the checks of flags, --out and its lock
            if self.folder:
                files, labels = self._chosen(name)
                split = _load_folder_split(self.data_dir, "train" if name in self.folder.carved else name,
                                           files, labels, self.classes, self.image_size)
            else:
                split = _load_tfds_split(name, self.image_size, self.limit,
                                         self.seed if name != "test" else CARVE_SEED, self.classes)  # test: fixed
            if len(split) == 0:
                raise UsageError(f"split {name!r} of {self.source} holds no images")
            self._cache[name] = split
        return self._cache[name]

    @property
    def train(self):
        return self.split("train")

    @property
    def validation(self):
        return self.split("validation")

    @property
    def test(self):
        return self.split("test")


def make_dataset(split, batch_size, seed=0, training=False, augment=False, augmenter=None):
    """tf.data over in-memory arrays: seeded per-epoch shuffle, batch, augment, prefetch. A seed
    gives the same batches and the same augmented images on every run (augmentation maps one
    batch at a time; `augmenter`: a make_augmenter(seed) of the caller's, else one is made).
    Under a thread cap (intra-op threads set), tf.data uses that many threads and no
    autotuning. Why: docs/training.md."""
    import tensorflow as tf

    threads = tf.config.threading.get_intra_op_parallelism_threads()
    ds = tf.data.Dataset.from_tensor_slices((split.x, split.y))
    if training:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training and augment:
        augmenter = augmenter or make_augmenter(seed)
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y))
    if not threads:
        return ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options).prefetch(1)


def make_augmenter(seed):
    """Each image independently: mirrored left-right or not, upside down or not (a leaf photo
    has no up or left), then turned by up to +-18 degrees; each layer seeded from `seed`, its
    own stream (numpy's SeedSequence). Why two flip layers and these seeds: docs/training.md."""
    import keras

    # Keras takes seeds below 2**31 - 1
    flip_lr, flip_ud, turn = (int(s) % (2**31 - 1) for s in np.random.SeedSequence(seed).generate_state(3))
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=flip_lr),
        keras.layers.RandomFlip("vertical", seed=flip_ud),
        keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=turn),  # +-18 degrees
    ], name="augment")


# --------------------------------------------------------------------------------------
# Model and training
# --------------------------------------------------------------------------------------


def build_model(hp, image_size=64, num_classes=len(CLASS_NAMES), seed=None):
    """`hp.layers` conv blocks then one dense hidden layer, softmax over `num_classes` classes.

    With BN every linear layer loses its bias (BN's beta replaces it) and is followed by
    BatchNormalization, then ReLU: Conv2D -> BN -> ReLU -> MaxPool, Dense -> BN -> ReLU.
    With a `seed`, each linear layer's initial weights come from a Glorot initializer seeded
    from it (its own stream): the same seed gives the same weights in any process or thread,
    whatever else draws random numbers there (a Dask worker's own threads do)."""
    import keras
    from keras import layers

    streams = iter(np.random.SeedSequence(seed).generate_state(hp.layers + 2) % (2**31 - 1)
                   if seed is not None else [None] * (hp.layers + 2))

    def init():
        stream = next(streams)
        return "glorot_uniform" if stream is None else keras.initializers.GlorotUniform(seed=int(stream))

    def linear_bn_relu(x, linear, name):
        x = linear(x)
        if hp.batch_norm:
            x = layers.BatchNormalization(momentum=hp.bn_momentum, name=f"{name}_bn")(x)
        return layers.Activation("relu", name=f"{name}_relu")(x)

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    size = image_size
    for i in range(1, hp.layers + 1):
        filters = min(32 * 2 ** (i - 1), 256)
        conv = layers.Conv2D(filters, 3, padding="same", use_bias=not hp.batch_norm, kernel_initializer=init(),
                             name=f"conv{i}")
        x = linear_bn_relu(x, conv, f"conv{i}")
        if size >= 2:  # deep stacks on small images stop halving at 1x1
            x = layers.MaxPooling2D(name=f"pool{i}")(x)
            size //= 2
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = linear_bn_relu(x, layers.Dense(hp.units, use_bias=not hp.batch_norm, kernel_initializer=init(), name="dense"),
                       "dense")
    outputs = layers.Dense(num_classes, activation="softmax", kernel_initializer=init(), name="classes")(x)
    name = "cnn_bn" if hp.batch_norm else "cnn"
    return keras.Model(inputs, outputs, name=name)


def schedule_parameters(hp, steps_per_epoch, horizon=None):
    """The learning-rate schedule `hp` asks for, as (kind, the Keras schedule's arguments), over
    `horizon` epochs (default hp.epochs). The one statement of the rule.

    inverse-time: alpha / (1 + decay * epoch), epoch counted in whole epochs (Keras
    InverseTimeDecay, staircase); constant when decay is 0. cosine: alpha * (1 + cos(pi * step /
    (horizon * steps_per_epoch))) / 2, from alpha at the first step to 0 after the last epoch
    (Keras CosineDecay); early stopping cuts it short."""
    horizon = hp.epochs if horizon is None else horizon
    if hp.schedule == "cosine":
        return "cosine", {"initial_learning_rate": hp.learning_rate, "decay_steps": horizon * steps_per_epoch}
    if hp.decay == 0:
        return "constant", {"learning_rate": hp.learning_rate}
    return "inverse-time", {"initial_learning_rate": hp.learning_rate, "decay_steps": steps_per_epoch,
                            "decay_rate": hp.decay, "staircase": True}


SCHEDULE_CLASSES = {"cosine": "CosineDecay", "inverse-time": "InverseTimeDecay"}  # in keras.optimizers.schedules


def learning_rate_schedule(hp, steps_per_epoch, horizon=None):
    """A Keras schedule (or a float, for a constant rate) as schedule_parameters states it."""
    import keras

    kind, arguments = schedule_parameters(hp, steps_per_epoch, horizon)
    if kind == "constant":
        return arguments["learning_rate"]
    return getattr(keras.optimizers.schedules, SCHEDULE_CLASSES[kind])(**arguments)


def _adam(hp, lr):
    import keras
    return keras.optimizers.Adam(lr, beta_1=hp.beta_1, beta_2=hp.beta_2, epsilon=hp.epsilon)


def _sgd(hp, lr):
    import keras
    return keras.optimizers.SGD(lr, momentum=hp.momentum)


OPTIMIZERS = {"adam": _adam, "sgd": _sgd}


def make_optimizer(hp, steps_per_epoch, horizon=None):
    return OPTIMIZERS[hp.optimizer](hp, learning_rate_schedule(hp, steps_per_epoch, horizon))


@dataclass
class TrainResult:
    model: object
    history: dict           # per-epoch lists: loss, accuracy, val_loss, val_accuracy, lr
    val_accuracy: float     # best epoch's (the weights kept)
    epochs: int             # epochs this call ran (a continued training: after its start)
    seconds: float
    status: str = "ok"      # "ok", "nan" (loss diverged) or "timeout"
    state: object = None    # checkpoint.State at the end, when the plan asked to keep it


def epoch_line(epoch, epochs, logs, seconds, lr):
    """One epoch's progress line; without a validation split (train(..., None)) no val_ fields."""
    nan = float("nan")
    val = (f"val_loss {logs.get('val_loss', nan):.4f}  val_acc {logs.get('val_accuracy', nan):.4f}  "
           if "val_loss" in logs or "val_accuracy" in logs else "")
    return (f"epoch {epoch:>3}/{epochs}  loss {logs.get('loss', nan):.4f}  "
            f"acc {logs.get('accuracy', nan):.4f}  {val}lr {lr:.2e}  {seconds:5.1f}s")


def join_splits(*splits):
    """One split holding the images of all `splits`, in order (the final model's train +
    validation, --final-data); they must have the same classes."""
    if len({s.classes for s in splits}) > 1:
        raise ValueError(f"cannot join splits of different classes: {[s.classes for s in splits]}")
    return Split(x=np.concatenate([s.x for s in splits]), y=np.concatenate([s.y for s in splits]),
                 files=tuple(f for s in splits for f in s.files), classes=splits[0].classes)


def continued_seed(seed, epochs_done):
    """The shuffle and augmentation seed of a training continued after `epochs_done` epochs: its
    own stream of `seed`, so that it does not replay the batches of its first epochs."""
    return int(np.random.SeedSequence([seed, epochs_done]).generate_state(1)[0] % (2**31 - 1))


def train(hp, train_split, val_split, seed=0, log=print, timeout=None, keep_best=True, plan=None, callbacks=()):
    """Trains a model; early-stops on validation accuracy and keeps the best weights
    (keep_best=False: the last epoch's, for measurements that must not pick an epoch on the
    validation split they then score). With `val_split` None there is nothing to stop on or
    pick by: all hp.epochs train, the last epoch's weights are kept, val_accuracy is NaN.

    With `timeout` (seconds), training stops at the first batch past it: status "timeout".
    `plan` (checkpoint.Plan): continue a saved State up to hp.epochs, spread the learning-rate
    schedule over more epochs than hp.epochs, return the end State.
    `callbacks`: more Keras callbacks, called after each epoch's log line and before early
    stopping reads the epoch's logs."""
    import keras
    import tensorflow as tf

    import checkpoint  # imports keras: here, like keras, so that --help and bad input answer at once

    plan = plan or checkpoint.Plan()
    if val_split is None and keep_best:
        raise ValueError("keep_best needs a validation split to pick the best epoch on")
    tf.get_logger().setLevel("ERROR")  # each new model retraces tf.functions; that is expected here
    keras.backend.clear_session()  # free the previous model's graph and memory
    keras.utils.set_random_seed(seed)
    steps = math.ceil(len(train_split) / hp.batch_size)
    model = build_model(hp, train_split.x.shape[1], num_classes=train_split.num_classes, seed=seed)
    model.compile(optimizer=make_optimizer(hp, steps, plan.horizon), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], run_eagerly=os.environ.get(EAGER_ENV) == "1")
    start = plan.start
    done = start.epochs if start is not None else 0
    if start is not None:
        checkpoint.restore(model, start)
        seed = continued_seed(seed, done)

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()
            # the rate this epoch trains with (a decay schedule moves it at the epoch's end)
            self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

        def on_epoch_end(self, epoch, logs=None):
            logs["lr"] = self.lr
            if log:
                log(epoch_line(epoch + 1, hp.epochs, logs, time.perf_counter() - self.start, self.lr))

    class TimeLimit(keras.callbacks.Callback):
        expired = False

        def on_train_batch_end(self, batch, logs=None):
            if timeout is not None and time.perf_counter() - begin > timeout:
                TimeLimit.expired = True
                self.model.stop_training = True

    snapshot = checkpoint.Snapshot()  # first: it reads the weights before early stopping restores the best
    callbacks = [snapshot, EpochLog(), *callbacks, keras.callbacks.TerminateOnNaN(), TimeLimit()]
    stopper = None
    if val_split is not None:
        stopper = checkpoint.EarlyStop(hp.patience, restore=keep_best, start=start)
        callbacks.append(stopper)
    begin = time.perf_counter()
    earlier = start.history if start is not None else {}
    if start is not None and (start.stopped or done >= hp.epochs):
        history = earlier  # nothing left to train: early stopping ended it, or it is long enough
        if keep_best and start.best_weights is not None:
            model.set_weights(start.best_weights)
    else:
        fit = model.fit(
            make_dataset(train_split, hp.batch_size, seed=seed, training=True, augment=hp.augment),
            validation_data=None if val_split is None else make_dataset(val_split, hp.batch_size),
            epochs=hp.epochs, initial_epoch=done, verbose=0, shuffle=False,  # make_dataset shuffles
            callbacks=callbacks,
        )
        history = {k: [*earlier.get(k, []), *(float(v) for v in vals)] for k, vals in fit.history.items()}
    seconds = time.perf_counter() - begin
    losses = history.get("loss", [])
    diverged = any(not math.isfinite(v) for v in losses)
    vals = [v for v in history.get("val_accuracy", []) if math.isfinite(v)]
    status = "nan" if diverged else "timeout" if TimeLimit.expired else "ok"
    state = None
    if plan.keep and status == "ok":
        state = snapshot.state(history, stopper) if snapshot.weights is not None else start
    return TrainResult(model=model, history=history, val_accuracy=max(vals) if vals and status == "ok" else float("nan"),
                       epochs=len(losses) - done, seconds=seconds, status=status, state=state)


def evaluate(model, split, batch_size=64):
    """Accuracy of `model` on `split`."""
    _, accuracy = model.evaluate(make_dataset(split, batch_size), verbose=0)
    return float(accuracy)
