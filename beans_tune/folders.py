"""Your own image folder, laid out `train[|validation|test]/<class>/*.jpg`: checked whole before
anything trains (layout, names, every image's header), and a missing validation/ or test/ carved
from train/ (docs/data.md). `read_folder(root) -> Folder`; images.Beans decodes its files.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .hparams import UsageError

SPLITS = ("train", "validation", "test")
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
        try:
            entries = list(folder.iterdir())
        except OSError as err:  # unreadable (permissions), or gone while being read
            raise UsageError(f"data folder {folder} cannot be read ({err.strerror or type(err).__name__})") from None
        for entry in entries:
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


