"""Data loading through tfds.folder_dataset.ImageFolder, on generated folders."""

import collections
import os
import shutil
import socket

import numpy as np
import pytest
from PIL import Image

import beans_tune.hparams
import beans_tune.images
import beans_tune.training
from conftest import CLASSES, make_image_folder


def test_folder_loads_all_splits_with_tfds_class_ids(data_dir):
    beans = beans_tune.images.Beans(data_dir, image_size=8)
    for name in beans_tune.images.SPLITS:
        split = beans.split(name)
        assert split.x.shape == (12, 8, 8, 3)
        assert split.x.dtype == np.float32
        assert 0.0 <= split.x.min() and split.x.max() <= 1.0
        assert sorted(np.bincount(split.y)) == [4, 4, 4]
        # label id follows the class folder, in TFDS's order
        for file, label in zip(split.files, split.y):
            assert CLASSES[label] in file


def test_grayscale_and_rgba_png_become_rgb(data_dir):
    train = beans_tune.images.Beans(data_dir, image_size=12).train
    gray = [i for i, f in enumerate(train.files) if f.endswith("_gray.png")]
    rgba = [i for i, f in enumerate(train.files) if f.endswith("_rgba.png")]
    assert len(gray) == 1 and len(rgba) == 1
    image = train.x[gray[0]]
    assert image.shape == (12, 12, 3)
    np.testing.assert_allclose(image[..., 0], image[..., 1])  # gray copied to R, G and B
    assert train.x[rgba[0]].shape == (12, 12, 3)


def test_cmyk_jpeg_is_decoded_to_matching_rgb(tmp_path):
    root = make_image_folder(tmp_path / "beans", per_class=1, size=16)
    path = next((root / "train" / "healthy").glob("*.jpg"))
    rgb = Image.open(path).convert("RGB")
    path.unlink()
    rgb.convert("CMYK").save(path.with_name("cmyk.jpg"), quality=100)
    train = beans_tune.images.Beans(root, image_size=16).train
    i = [k for k, f in enumerate(train.files) if f.endswith("cmyk.jpg")][0]
    expected = np.asarray(Image.open(path.with_name("cmyk.jpg")).convert("RGB")) / 255.0
    assert np.abs(train.x[i] - expected).mean() < 0.05


def test_limit_is_stratified_and_seeded(tmp_path):
    root = make_image_folder(tmp_path / "beans", per_class=6)
    first = beans_tune.images.Beans(root, image_size=8, limit=9, seed=1).train
    again = beans_tune.images.Beans(root, image_size=8, limit=9, seed=1).train
    assert len(first) == 9
    assert list(np.bincount(first.y)) == [3, 3, 3]
    assert first.files == again.files
    others = [beans_tune.images.Beans(root, image_size=8, limit=9, seed=seed).train.files for seed in (2, 3, 4)]
    assert any(files != first.files for files in others)  # the seed, not a fixed one, draws them


def test_stratified_indices_keep_every_class():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 3)
    idx = beans_tune.images.stratified_indices(labels, 10, seed=0)
    assert len(idx) == 10
    assert set(labels[idx]) == {0, 1, 2}


@pytest.mark.parametrize("counts, limit", [((100, 1, 1), 3), ((50, 2, 2, 2), 5), ((60, 2, 2), 3)])
def test_stratified_indices_never_exceed_the_limit(counts, limit):
    labels = np.repeat(np.arange(len(counts)), counts)
    idx = beans_tune.images.stratified_indices(labels, limit, seed=0)
    assert len(idx) == limit and len(set(idx)) == limit
    assert set(labels[idx]) == set(range(len(counts)))  # every class still represented


def test_splits_are_decoded_on_demand_only(data_dir, monkeypatch):
    beans = beans_tune.images.Beans(data_dir, image_size=8)
    beans.train
    beans.validation
    assert set(beans._cache) == {"train", "validation"}  # test split not decoded yet


@pytest.mark.parametrize("damage, message", [
    (lambda root: shutil.rmtree(root / "train"), "missing split folder: {root}/train"),
    (lambda root: shutil.rmtree(root / "train" / "bean_rust"),
     "class folders of {root}/validation differ from {root}/train's: unexpected bean_rust"),
    (lambda root: [p.unlink() for p in (root / "test" / "healthy").iterdir()],
     "no .jpg/.jpeg/.png images in {root}/test/healthy"),
    (lambda root: (root / "train" / "healthy" / "broken.jpg").write_bytes(b"not an image at all"),
     "not a readable image: {root}/train/healthy/broken.jpg"),
    (lambda root: (root / "test" / "oak").mkdir(), "class folders of {root}/test differ from {root}/train's: "
                                                   "unexpected oak"),
    (lambda root: (shutil.rmtree(root / "validation"), (root / "validation").write_text("")),
     "{root}/validation is not a folder"),
    (lambda root: (root / "train" / "healthy" / "more.JPG").mkdir(),  # ImageFolder would read it as a file
     "{root}/train/healthy/more.JPG is a folder with an image's name: rename or remove it"),
    (lambda root: (root / "test" / "healthy" / "gone.jpg").symlink_to(root / "nowhere.jpg"),
     "{root}/test/healthy/gone.jpg is a broken link with an image's name: rename or remove it"),
    (lambda root: (root / "validation" / "healthy" / ".jpg").mkdir(),  # no Path.suffix, but ImageFolder's
     "{root}/validation/healthy/.jpg is a folder with an image's name: rename or remove it"),
    (lambda root: ((root / "train" / ".ipynb_checkpoints").mkdir(),  # no class, but ImageFolder reads it
                   os.mkfifo(root / "train" / ".ipynb_checkpoints" / "p.jpg")),  # reading it would block
     "{root}/train/.ipynb_checkpoints/p.jpg is a special file with an image's name: rename or remove it"),
])
def test_bad_folders_are_reported_with_the_path(data_dir, damage, message):
    damage(data_dir)
    with pytest.raises(beans_tune.hparams.UsageError) as err:
        beans_tune.images.Beans(data_dir, image_size=8)
    assert message.format(root=data_dir) in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder whatever its permissions")
@pytest.mark.parametrize("unreadable", ["", "train/healthy"])
def test_an_unreadable_folder_is_one_usage_line(data_dir, unreadable):
    folder = data_dir / unreadable
    folder.chmod(0)
    try:
        with pytest.raises(beans_tune.hparams.UsageError, match=f"data folder {folder} cannot be read"):
            beans_tune.images.Beans(data_dir, image_size=8)
    finally:
        folder.chmod(0o755)


def test_truncated_jpeg_is_named_when_decoding(data_dir):
    path = next((data_dir / "train" / "healthy").glob("*.jpg"))
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # header intact, scan data cut
    beans = beans_tune.images.Beans(data_dir, image_size=8)  # the header still reads
    with pytest.raises(beans_tune.hparams.UsageError, match=f"cannot decode image .*{path.name}"):
        beans.train


def unreachable_host():
    """An address nothing listens on (a port just closed): a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return ("127.0.0.1", sock.getsockname()[1])


def test_offline_tfds_fails_fast_naming_both_options(monkeypatch):
    """TFDS without beans on a machine that cannot reach its download host: one line naming both
    ways to give the data, before anything downloads."""
    monkeypatch.delenv("BEANS_DATA_DIR", raising=False)
    monkeypatch.setattr(beans_tune.images, "beans_prepared", lambda: False)
    monkeypatch.setattr(beans_tune.images, "TFDS_HOST", unreachable_host())
    with pytest.raises(beans_tune.hparams.UsageError) as err:
        beans_tune.images.Beans(None)
    assert "--data-dir" in str(err.value) and "BEANS_DATA_DIR" in str(err.value)


def test_env_variable_names_the_folder(data_dir, monkeypatch):
    monkeypatch.setenv("BEANS_DATA_DIR", str(data_dir))
    assert beans_tune.images.resolve_data_dir(None) == data_dir
    assert beans_tune.images.resolve_data_dir("elsewhere") == beans_tune.images.Path("elsewhere")


def test_training_batches_are_shuffled_per_epoch_with_a_seed(data_dir):
    split = beans_tune.images.Beans(data_dir, image_size=8).train
    ds = beans_tune.training.make_dataset(split, batch_size=12, seed=3, training=True)
    first, second = [next(iter(ds))[1].numpy() for _ in range(2)]
    again = next(iter(beans_tune.training.make_dataset(split, batch_size=12, seed=3, training=True)))[1].numpy()
    assert not np.array_equal(first, second)  # a new order each epoch
    np.testing.assert_array_equal(first, again)  # the same order for the same seed


def _marked_images(n, size=6):
    """n identical images, black but for one bright pixel in the top-left corner."""
    x = np.zeros((n, size, size, 3), np.float32)
    x[:, 0, 0, :] = 1.0
    return beans_tune.images.Split(x=x, y=np.zeros(n, np.int64))


def _corners(batches):
    """Where each image's marked corner went: (top?, left?) after flips; a turn of up to 18
    degrees moves it along the image's edge but leaves it brightest in its own corner."""
    out = []
    for xb in batches:
        for img in xb[..., 0]:
            c = [img[0, 0], img[0, -1], img[-1, 0], img[-1, -1]]
            out.append(("top", "left") if np.argmax(c) == 0 else ("top", "right") if np.argmax(c) == 1
                       else ("bottom", "left") if np.argmax(c) == 2 else ("bottom", "right"))
    return out


def _epochs(ds, n):
    return [xb.numpy() for _ in range(n) for xb, _ in ds]


def test_augmentation_mirrors_and_flips_each_image_independently():
    # Keras' RandomFlip("horizontal_and_vertical") draws one coin for both axes: it only ever
    # turns an image by 180 degrees, so only top-left and bottom-right would appear here.
    ds = beans_tune.training.make_dataset(_marked_images(16), batch_size=8, seed=0, training=True, augment=True)
    batches = _epochs(ds, 4)
    seen = collections.Counter(_corners(batches))
    assert set(seen) == {("top", "left"), ("top", "right"), ("bottom", "left"), ("bottom", "right")}
    assert min(seen.values()) >= 6  # 64 images: about 16 each
    assert all(len(set(_corners([xb]))) > 1 for xb in batches)  # drawn per image, not per batch


def test_augmentation_layers_and_seeds_draw_apart():
    seeds = [[layer.seed for layer in beans_tune.training.make_augmenter(s).layers] for s in (0, 1, 2)]
    assert all(len(set(run)) == 3 for run in seeds)  # a layer's numbers are not another's
    assert len({seed for run in seeds for seed in run}) == 9  # nor those of a neighbouring seed's run
    assert seeds[0] == [layer.seed for layer in beans_tune.training.make_augmenter(0).layers]


def test_augmentation_is_reproducible_and_new_for_every_batch():
    split = _marked_images(16)
    runs = [_epochs(beans_tune.training.make_dataset(split, batch_size=4, seed=5, training=True, augment=True), 2)
            for _ in range(2)]
    np.testing.assert_array_equal(np.stack(runs[0]), np.stack(runs[1]))  # same seed, same images
    # the images are identical, so batches that come out identical drew the same random numbers
    # (batches augmented in parallel from one shared random state did)
    batches = runs[0]
    assert all(not np.array_equal(a, b) for i, a in enumerate(batches) for b in batches[i + 1:])
    assert all(not np.array_equal(xb[0], xb[i]) for xb in batches for i in range(1, len(xb)))  # nor within one
    other = _epochs(beans_tune.training.make_dataset(split, batch_size=4, seed=6, training=True, augment=True), 2)
    assert not np.array_equal(np.stack(other), np.stack(runs[0]))
