"""Your own data: any folder of class subfolders, its classes from train/, a missing validation/
or test/ carved from train/, and the number of classes carried to the model, the searches and
the outputs. On generated folders of a few tiny images, each class its own colour."""

import json
import shutil

import pytest

import beans_tune.images
import beans_tune.training
import train_bn
import tune_random
from conftest import make_image_folder, patch_train

TWO = ("cat", "dog")
FIVE = ("ash", "birch", "cedar", "elm", "oak")
TRAIN = ["--image-size", "16", "--epochs", "2", "--layers", "1", "--units", "8", "--batch-size", "8"]
SEARCH = [*TRAIN, "--n-iter", "2", "--decay", "0", "--augment", "false"]


def classes_line(printed):
    return next(line for line in printed.splitlines() if line.startswith("classes ("))


def output_width(path):
    import keras

    return keras.saving.load_model(path).output_shape[-1]


# --- end to end ------------------------------------------------------------------------------

@pytest.mark.parametrize("classes, splits", [(TWO, ("train", "validation", "test")), (FIVE, ("train",))])
def test_train_bn_learns_the_folders_classes(tmp_path, capsys, classes, splits):
    """2 classes with every split; 5 with train/ alone (validation/ and test/ carved)."""
    root = make_image_folder(tmp_path / "data", per_class=10, splits=splits, classes=classes)
    out = tmp_path / "run"
    assert train_bn.main(["--data-dir", str(root), "--out", str(out), *TRAIN]) == 0
    printed = capsys.readouterr().out
    counts = "10/10/10" if len(splits) == 3 else "8/1/1"
    assert classes_line(printed).startswith(f"classes ({len(classes)}): {classes[0]} {counts}, {classes[1]} {counts}")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == list(classes)
    assert output_width(out / "model.keras") == len(classes)  # the softmax spans the folder's classes


@pytest.mark.parametrize("classes, splits", [(TWO, ("train", "validation", "test")), (FIVE, ("train",))])
@pytest.mark.slow
def test_tune_random_searches_the_folders_classes(tmp_path, capsys, classes, splits):
    root = make_image_folder(tmp_path / "data", per_class=10, splits=splits, classes=classes)
    out = tmp_path / "search"
    assert tune_random.main(["--data-dir", str(root), "--out", str(out), *SEARCH]) == 0
    printed = capsys.readouterr().out
    assert classes_line(printed).startswith(f"classes ({len(classes)}): ")
    assert ("carved" in printed) == (len(splits) == 1)
    best = json.loads((out / "best.json").read_text())
    assert best["classes"] == list(classes) and best["trials"] == 2
    assert best["test_images"] == (10 if len(splits) == 3 else 1) * len(classes)
    assert output_width(out / "model.keras") == len(classes)


# --- classes ---------------------------------------------------------------------------------

def test_classes_are_the_sorted_class_folders_of_train(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=2, classes=("zebra", "Apple", "mango", "kiwi"))
    (root / "train" / ".ipynb_checkpoints").mkdir()  # hidden folders are no class
    (root / "notes").mkdir()  # nor is a folder beside the splits (ImageFolder would number it in)
    make_image_folder(root / "notes", per_class=1, splits=("extra",), classes=("zzz",))
    beans = beans_tune.images.Beans(root, image_size=8)
    assert beans.classes == ("Apple", "kiwi", "mango", "zebra")  # sorted as Python sorts: label id = index
    for split in (beans.train, beans.validation, beans.test):
        assert split.classes == beans.classes and split.num_classes == 4
        assert [beans.classes[label] for label in split.y] == [f.split("/")[-2] for f in split.files]


def test_hidden_files_such_as_macos_appledouble_ones_are_no_images(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=3, classes=TWO)
    for split in ("train", "test"):
        for image in (root / split / "cat").iterdir():  # what a copy from macOS leaves: not an image
            (image.parent / f"._{image.name}").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    beans = beans_tune.images.Beans(root, image_size=8)
    assert [len(beans.train.y), len(beans.validation.y), len(beans.test.y)] == [6, 6, 6]
    assert not any(f.split("/")[-1].startswith(".") for f in beans.train.files + beans.test.files)


def test_tfds_keeps_beans_and_its_class_names(monkeypatch):
    monkeypatch.delenv("BEANS_DATA_DIR", raising=False)
    monkeypatch.setattr(beans_tune.images, "check_tfds_reachable", lambda: None)
    assert beans_tune.images.Beans(None).classes == ("angular_leaf_spot", "bean_rust", "healthy")


def test_counting_images_decodes_nothing(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "data", per_class=5, splits=("train", "test"), classes=FIVE)
    beans = beans_tune.images.Beans(root, image_size=8, limit=10)

    def refuse(*args, **kwargs):
        raise AssertionError("decoded images to count them")

    monkeypatch.setattr(beans_tune.images, "_to_arrays", refuse)
    assert beans.describe() == [
        f"data: {root}: validation/ missing: carved 10% of train/ per class (stratified, fixed seed 0)",
        "classes (5): ash 2/1/2, birch 2/1/2, cedar 2/1/2, elm 2/1/2, oak 2/1/2 (train/validation/test; "
        "10/5/10 in all)"]


def test_a_val_folder_is_named_as_not_read_when_validation_is_carved(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=10, splits=("train", "test"), classes=TWO)
    make_image_folder(root, per_class=2, splits=("val",), classes=TWO)
    assert beans_tune.images.Beans(root, image_size=8).describe()[0] == (
        f"data: {root}: validation/ missing: carved 10% of train/ per class (stratified, fixed seed 0); "
        "val/ not read: only train/, validation/ and test/ are")


def test_many_classes_are_summed_up_in_one_line(tmp_path):
    names = tuple(f"c{i:02d}" for i in range(8))
    beans = beans_tune.images.Beans(make_image_folder(tmp_path / "data", per_class=1, classes=names), image_size=8)
    line = beans.describe(most=3)[-1]
    assert line == "classes (8): c00 1/1/1, c01 1/1/1, c02 1/1/1, ... (5 more) (train/validation/test; 8/8/8 in all)"


# --- carving ---------------------------------------------------------------------------------

@pytest.mark.parametrize("missing", [("validation",), ("test",), ("validation", "test")])
def test_a_missing_split_is_carved_from_train_per_class(tmp_path, missing):
    per_class = {"a": 30, "b": 12, "c": 5}
    root = make_image_folder(tmp_path / "data", per_class=per_class, classes=tuple(per_class))
    for split in missing:
        shutil.rmtree(root / split)
    beans = beans_tune.images.Beans(root, image_size=8)
    carved = {"a": 3, "b": 1, "c": 1}  # 10% of the class's train images, rounded down, at least 1
    for split in beans_tune.images.SPLITS:
        expected = ([n - len(missing) * carved[c] for c, n in per_class.items()] if split == "train"
                    else list(carved.values()) if split in missing else list(per_class.values()))
        assert list(beans.counts(split)) == expected, split
    files = {s: set(beans.split(s).files) for s in beans_tune.images.SPLITS}
    taken = set().union(*(files[s] for s in missing))
    assert all("/train/" in f for f in taken)
    assert not files["train"] & taken and sum(len(files[s]) for s in missing) == len(taken)
    assert len(files["train"] | taken) == sum(per_class.values())  # every train image is somewhere


def test_the_carve_is_the_same_whatever_the_seed_and_limit(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=20, splits=("train",))
    folders = [beans_tune.images.Beans(root, image_size=8, seed=seed).folder for seed in (0, 1, 12345)]
    assert all(f.files == folders[0].files for f in folders)
    # --limit draws train and validation with --seed, the test split's images with a fixed seed:
    # no --seed re-rolls the test images, with or without --limit
    tests = [beans_tune.images.Beans(root, image_size=8, seed=seed, limit=3)._chosen("test")[0] for seed in (0, 7, 12345)]
    assert all(t == tests[0] for t in tests) and len(tests[0]) == 3
    assert set(tests[0]) <= set(folders[0].files["test"])
    trains = {tuple(beans_tune.images.Beans(root, image_size=8, seed=seed, limit=3)._chosen("train")[0]) for seed in (0, 7, 12345)}
    assert len(trains) > 1
    # test/ is carved first: adding a validation/ folder later leaves the test split as it was
    make_image_folder(root, per_class=2, splits=("validation",))
    assert beans_tune.images.Beans(root, image_size=8).folder.files["test"] == folders[0].files["test"]


# --- bad input -------------------------------------------------------------------------------

def one_class(root):
    shutil.rmtree(root / "train" / "dog")


def differing_class_folders(root):
    (root / "validation" / "dog").rename(root / "validation" / "doggo")


def empty_class_folder(root):
    for image in (root / "train" / "dog").iterdir():
        image.unlink()


def too_few_to_carve(root):
    shutil.rmtree(root / "test")
    for image in sorted((root / "train" / "cat").iterdir())[1:]:
        image.unlink()


@pytest.mark.parametrize("damage, argv, message", [
    (one_class, [], "holds 1 class folder: cat; a classifier needs at least 2"),
    (differing_class_folders, [], "differ from {root}/train's: missing dog; unexpected doggo"),
    (empty_class_folder, [], "no .jpg/.jpeg/.png images in {root}/train/dog"),
    (too_few_to_carve, [], "cannot carve test/ from {root}/train/cat: it holds 1 image, at least 2 needed"),
    (lambda root: make_image_folder(root, per_class=1, classes=("eel",)), ["--limit", "2"],
     "--limit 2 is below the 3 classes of {root}"),
])
@pytest.mark.parametrize("script", [train_bn, tune_random])
def test_bad_folders_end_in_one_line_before_any_training(tmp_path, capsys, monkeypatch, script, damage, argv,
                                                         message):
    patch_train(monkeypatch, lambda *a, **k: pytest.fail("trained despite bad input"))
    root = make_image_folder(tmp_path / "data", per_class=3, classes=TWO)
    damage(root)
    out = tmp_path / "run"
    code = script.main(["--data-dir", str(root), "--out", str(out), *argv, "--image-size", "16"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message.format(root=root) in err, err
    assert not out.exists()


def test_limit_below_two_is_refused_when_parsing(tmp_path, capsys):
    assert train_bn.main(["--data-dir", str(tmp_path), "--limit", "1"]) == 2
    assert "argument --limit: must be in [2, 1000000], got 1" in capsys.readouterr().err


@pytest.mark.slow
def test_a_search_over_changed_images_is_another_search(tmp_path, capsys, scored):
    """A class or an image added after a search ran: rerunning or resuming it is refused in one
    line (exit 2) rather than mixing trainings on other data; the old folder is untouched."""
    import json

    root = make_image_folder(tmp_path / "data", per_class=6, classes=("cat", "dog"))
    out = tmp_path / "run"
    argv = ["--data-dir", str(root), "--out", str(out), "--n-iter", "2", "--image-size", "8", "--epochs", "1"]
    assert tune_random.main(argv) == 0
    manifest = json.loads((out / "search.json").read_text())
    assert manifest["images"]["classes"] == ["cat", "dog"] and manifest["images"]["images"]["train"] == 12
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    for change in (lambda: make_image_folder(root, per_class=6, classes=("cat", "dog", "eel")),
                   lambda: (root / "train" / "cat" / "cat_1.jpg").rename(root / "train" / "cat" / "cat_99.jpg")):
        change()
        assert tune_random.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "changed since it ran" in err[0]
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_adding_a_class_or_an_image_leaves_the_carve_of_the_others(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=20, splits=("train",), classes=("b", "c", "d"))
    before = beans_tune.images.Beans(root, image_size=8).folder.files
    make_image_folder(tmp_path / "more", per_class=20, splits=("train",), classes=("a0", "b"))
    shutil.copytree(tmp_path / "more" / "train" / "a0", root / "train" / "a0")
    shutil.copy(tmp_path / "more" / "train" / "b" / "b_5.jpg", root / "train" / "b" / "b_new.jpg")
    after = beans_tune.images.Beans(root, image_size=8).folder.files
    for split in ("validation", "test"):
        kept = [f for f in after[split] if f.parent.name in ("c", "d")]
        assert kept == [f for f in before[split] if f.parent.name in ("c", "d")]
        # class b gained an image: at most that one image moved in or pushed one out
        old_b = {f for f in before[split] if f.parent.name == "b"}
        new_b = {f for f in after[split] if f.parent.name == "b"}
        assert len(old_b - new_b) <= 1 and len(new_b - old_b) <= 1


def test_a_file_name_not_in_utf8_is_named_in_one_line(tmp_path, capsys):
    import os

    root = make_image_folder(tmp_path / "data", per_class=4, classes=("cat", "dog"))
    shutil.copy(root / "train" / "dog" / "dog_1.jpg", os.fsencode(root / "train" / "dog") + b"/caf\xe9.jpg")
    out = tmp_path / "run"
    assert train_bn.main(["--data-dir", str(root), "--out", str(out), "--image-size", "8", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "file name not in UTF-8" in err[0] and "caf\\xe9.jpg" in err[0]
    assert not out.exists()
