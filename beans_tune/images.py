"""The images: TFDS's beans (`tfds.load("beans")`), or your own folder laid out
`train[|validation|test]/<class>/*.jpg` (--data-dir DIR or $BEANS_DATA_DIR; checked and carved by
folders.py), read by TFDS's own `tfds.folder_dataset.ImageFolder`. Images are decoded and resized once per process into numpy arrays (`Split`); `Beans` decodes
each split on first use, so the test split is decoded only when the final model asks for it.
"""

import hashlib
import os
import pkgutil
import socket
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's start-up chatter

import numpy as np  # noqa: E402

from .folders import (  # noqa: E402
    CARVE_PERCENT,
    CARVE_SEED,
    SPLIT_ALIASES,
    SPLITS,
    find_undecodable,
    read_folder,
)
from .hparams import UsageError  # noqa: E402

# beans' classes, TFDS label ids 0, 1, 2: the default data's (a folder's are its train/ subfolders)
CLASS_NAMES = ("angular_leaf_spot", "bean_rust", "healthy")
DATA_ENV = "BEANS_DATA_DIR"
# tfds.load("beans") downloads from this host; probed first so that an offline machine
# fails in seconds instead of retrying for minutes.
TFDS_HOST = ("storage.googleapis.com", 443)


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
RUNTIME_MODULES = ("numpy", "scipy", "sklearn", "skopt", "matplotlib", "PIL", "filelock", "tensorflow", "keras",
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


def beans_prepared():
    """Whether TFDS holds beans on this machine already (no download needed)."""
    return _beans_builder().is_prepared()


def check_tfds_reachable():
    if beans_prepared():
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

    check_tfds_reachable()
    ds = tfds.load("beans", split=split, shuffle_files=False)
    ds = ds.enumerate().map(lambda i, ex: (ex["image"], ex["label"], tf.strings.as_string(i)))
    x, y, names = _to_arrays(ds, image_size)
    idx = stratified_indices(y, limit, seed)
    return Split(x=x[idx], y=y[idx], files=tuple(names[i] for i in idx), classes=classes)


def join_splits(*splits):
    """One split holding the images of all `splits`, in order (the final model's train +
    validation, --final-data); they must have the same classes."""
    if len({s.classes for s in splits}) > 1:
        raise ValueError(f"cannot join splits of different classes: {[s.classes for s in splits]}")
    return Split(x=np.concatenate([s.x for s in splits]), y=np.concatenate([s.y for s in splits]),
                 files=tuple(f for s in splits for f in s.files), classes=splits[0].classes)


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
            check_tfds_reachable()
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

