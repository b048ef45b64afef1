"""trainables.core.data: seeded stratified splits, preprocessing, and every dataset loaded from files made here."""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.helpers import Payload
from trainables.core.data import (
    DatasetConfig,
    DatasetNotFound,
    FolderSplit,
    Splits,
    TensorSplit,
    load_splits,
    split_indices,
    stratified_split,
)
from trainables.core.data.stratify import TooFewImages
from trainables.core.models.registry import Preprocess


@pytest.fixture(autouse=True)
def _fresh_cache():
    load_splits.cache_clear()  # every test loads from its own files
    yield
    load_splits.cache_clear()


def _counts(labels, n_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels), minlength=n_classes)


def _ys(split) -> torch.Tensor:
    return torch.cat([y for _, y in split.batches(1000, shuffle=False, generator=None, augment=False)])


# ---- seeded stratified splits (digits: the embedded dataset) ------------------------------

def test_split_indices_stratified_disjoint_and_seeded():
    from sklearn.datasets import load_digits

    labels = load_digits().target
    cfg = DatasetConfig()
    tr, va, te = split_indices(labels, cfg, has_test=False)
    assert len(set(tr) | set(va) | set(te)) == len(tr) + len(va) + len(te) == len(labels)  # disjoint, complete
    pools = ((te, np.arange(len(labels)), cfg.test_fraction), (va, np.concatenate([tr, va]), cfg.val_fraction))
    for held, pool, frac in pools:
        expected = _counts(labels[pool], 10) * frac
        assert np.all(np.abs(_counts(labels[held], 10) - expected) <= 1)  # within one sample per class
    assert abs(len(va) - 0.2 * (len(tr) + len(va))) <= 1  # val is 20% of the training pool by default

    again = split_indices(labels, DatasetConfig(), has_test=False)
    other = split_indices(labels, DatasetConfig(seed=1), has_test=False)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again, strict=True))
    assert not np.array_equal(tr, other[0]) and not np.array_equal(va, other[1])

    tr2, va2, te2 = split_indices(labels, cfg, has_test=True)  # the dataset brings its own test split
    assert len(te2) == 0 and len(tr2) + len(va2) == len(labels)


@settings(max_examples=300, deadline=None)
@given(labels=st.lists(st.integers(0, 11), min_size=2, max_size=300), as_text=st.booleans(),
       fraction=st.sampled_from([0.1, 0.2, 0.25, 0.5]) | st.floats(0.01, 0.99), seed=st.integers(0, 2**32 - 1))
def test_stratified_split_is_scikit_learns_index_for_index(labels, as_text, fraction, seed):
    # the port spares each trial process scikit-learn's import; splits must not move for it
    from sklearn.model_selection import train_test_split

    y = np.array([f"class{v}" for v in labels] if as_text else labels)
    try:
        rest, held = train_test_split(np.arange(len(y)), test_size=fraction, stratify=y, random_state=seed)
    except ValueError:
        with pytest.raises(TooFewImages):
            stratified_split(y, fraction, seed)
        return
    ours = stratified_split(y, fraction, seed)
    assert np.array_equal(ours[0], np.sort(rest)) and np.array_equal(ours[1], np.sort(held))


def test_digits_splits_sizes_and_identical_reloads():
    s = load_splits(DatasetConfig())
    assert (len(s.train), len(s.val), len(s.test)) == (1149, 288, 360)
    assert s.classes == [str(c) for c in range(10)] and s.in_channels == 1 and s.image_size == 32
    load_splits.cache_clear()
    again = load_splits(DatasetConfig())
    assert torch.equal(s.train.x, again.train.x) and torch.equal(s.val.y, again.val.y)
    other = load_splits(DatasetConfig(seed=3))
    assert not torch.equal(s.val.y, other.val.y)


def test_limit_caps_training_images_only():
    s = load_splits(DatasetConfig(limit=100))
    assert len(s.train) == 100 and len(s.val) == 288 and len(s.test) == 360


def test_image_size_and_channels():
    s = load_splits(DatasetConfig(image_size=16), Preprocess(channels=3))
    assert s.train.x.shape[1:] == (3, 16, 16) and s.in_channels == 3 and s.image_size == 16
    # no size anywhere: the dataset default, raised to what the model survives
    assert load_splits(DatasetConfig(), Preprocess(min_image_size=48)).image_size == 48
    assert load_splits(DatasetConfig(), Preprocess(image_size=20)).train.x.shape[-1] == 20  # the model's need wins


def test_normalisation_given_or_own():
    raw = load_splits(DatasetConfig(), Preprocess(mean=(0.0,), std=(1.0,))).train.x
    assert raw.min() >= 0 and raw.max() <= 1 + 1e-5
    given = load_splits(DatasetConfig(), Preprocess(mean=(0.5,), std=(0.25,))).train.x
    torch.testing.assert_close(given, (raw - 0.5) / 0.25)
    own = load_splits(DatasetConfig()).train.x  # the training split's own statistics
    assert abs(own.mean().item()) < 1e-3 and abs(own.std().item() - 1) < 1e-2


def test_augment_changes_batch_keeps_shape():
    s = load_splits(DatasetConfig())
    plain = next(s.train.batches(64, shuffle=True, generator=torch.Generator().manual_seed(0), augment=False))
    aug = next(s.train.batches(64, shuffle=True, generator=torch.Generator().manual_seed(0), augment=True))
    assert aug[0].shape == plain[0].shape and torch.equal(aug[1], plain[1])  # same order, same labels
    assert not torch.equal(aug[0], plain[0])


# ---- mnist / cifar10 from fabricated files -------------------------------------------------

def _write_idx(path: Path, arr: np.ndarray) -> None:
    """The MNIST idx format: big-endian magic (0, 0, 0x08 = uint8, ndim), dims, then the bytes."""
    header = struct.pack(">I", 0x0800 | arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def _make_mnist(root: Path, n_train=300, n_test=100):
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        rng.shuffle(y)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        out[prefix] = (x, y)
    return out


def _make_cifar10(root: Path, per_batch=40, n_test=50):
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    out = {}
    for i, name in enumerate(batches):
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)  # rows: R plane, G plane, B plane
        labels = [int(v) for v in (np.arange(n) + i) % 10]
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels}, f)
        out[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    return out, names


def test_mnist_from_idx_files(tmp_path):
    files = _make_mnist(tmp_path)
    s = load_splits(DatasetConfig(name="mnist", root=str(tmp_path)), Preprocess(mean=(0.0,), std=(1.0,)))
    assert (len(s.train), len(s.val), len(s.test)) == (240, 60, 100)
    assert s.classes == [str(c) for c in range(10)] and s.in_channels == 1 and s.image_size == 28
    x, y = files["t10k"]
    assert torch.equal(s.test.y, torch.from_numpy(y).long())  # the official test split, in file order
    torch.testing.assert_close(s.test.x[:, 0], torch.from_numpy(x).float() / 255)
    assert np.all(_counts(s.val.y, 10) == 6)  # stratified: 30 per class in the file, 20% held
    assert s.train.flip is False
    assert load_splits(DatasetConfig(name="mnist", root=str(tmp_path)), Preprocess(min_image_size=32)).image_size == 32


def test_cifar10_from_pickles(tmp_path):
    files, names = _make_cifar10(tmp_path)
    cfg = DatasetConfig(name="cifar10", root=str(tmp_path))
    with pytest.warns(UserWarning, match="differ from the official release"):
        s = load_splits(cfg, Preprocess(mean=(0.0,) * 3, std=(1.0,) * 3))
    assert (len(s.train), len(s.val), len(s.test)) == (160, 40, 50)
    assert s.classes == names and s.in_channels == 3 and s.image_size == 32 and s.train.flip is True
    data, labels = files["test_batch"]
    assert s.test.y.tolist() == labels
    torch.testing.assert_close(s.test.x, torch.from_numpy(data).view(-1, 3, 32, 32).float() / 255)


def test_cifar10_matching_md5s_take_torchvision_s_checked_path(tmp_path, monkeypatch):
    import hashlib
    import warnings

    from torchvision.datasets import CIFAR10

    _make_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    md5 = lambda name: hashlib.md5((folder / name).read_bytes()).hexdigest()  # noqa: E731
    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5(n)] for n, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[n, md5(n)] for n, _ in CIFAR10.test_list])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5("batches.meta")})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "differ from the official release"
        s = load_splits(DatasetConfig(name="cifar10", root=str(tmp_path)))
    assert len(s.test) == 50


def test_missing_files_say_where_to_put_what(tmp_path):
    with pytest.raises(DatasetNotFound) as e:
        load_splits(DatasetConfig(name="mnist", root=str(tmp_path)))
    msg = str(e.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg and "download: true" in msg
    with pytest.raises(DatasetNotFound) as e:
        load_splits(DatasetConfig(name="cifar10", root=str(tmp_path)))
    msg = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "data_batch_1" in msg and "download: true" in msg
    assert isinstance(e.value, ValueError)


def test_corrupt_cifar10_is_the_same_clear_error(tmp_path):
    _make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.warns(UserWarning), pytest.raises(DatasetNotFound, match="unreadable files"):
        load_splits(DatasetConfig(name="cifar10", root=str(tmp_path)))


def test_a_cifar10_file_that_fails_its_checksum_runs_no_code(tmp_path):
    _make_cifar10(tmp_path)
    marker = tmp_path / "ran"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0]}))
    with pytest.warns(UserWarning), pytest.raises(DatasetNotFound) as e:
        load_splits(DatasetConfig(name="cifar10", root=str(tmp_path)))
    assert not marker.exists() and "refused to load posix.system" in str(e.value)


def test_failed_download_is_the_same_clear_error(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    def offline(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network")

    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(DatasetNotFound, match="download failed.*no network"):
        load_splits(DatasetConfig(name="mnist", root=str(tmp_path), download=True))


# ---- image folders ---------------------------------------------------------------------------

CLASSES = ["ant", "bee", "cat"]  # written in another order below: names are sorted


def _make_tree(root: Path, *, train=20, test=5, test_dir="val", size=(40, 30)):
    rng = np.random.default_rng(0)
    for split, n in (("train", train), (test_dir, test)):
        if not split:
            continue
        for c, name in reversed(list(enumerate(CLASSES))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                arr = np.clip(rng.normal(60 + 70 * c, 30, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
                img = Image.fromarray(arr)
                if i == 0:
                    img = img.convert("L")  # a grayscale file among colour ones
                img.save(folder / f"{i:03d}.jpg")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return _make_tree(tmp_path_factory.mktemp("folders") / "inaturalist_12K")


def _folder_cfg(root, **kw):  # the streaming path (tests/test_cache.py: the decoded cache)
    return DatasetConfig(**{"name": "imagefolder", "root": str(root), "image_size": 32, "workers": 0, "cache": "none",
                            **kw})


def test_imagefolder_classes_split_and_batches(tree):
    s = load_splits(_folder_cfg(tree))
    assert isinstance(s.train, FolderSplit) and s.classes == CLASSES
    assert (len(s.train), len(s.val), len(s.test)) == (48, 12, 15) and s.in_channels == 3 and s.image_size == 32
    assert np.all(_counts(s.val.labels, 3) == 4) and np.all(_counts(s.test.labels, 3) == 5)
    assert not {p for p, _ in s.train.samples} & {p for p, _ in s.val.samples}
    assert all("/val/" in p for p, _ in s.test.samples)
    gen = torch.Generator().manual_seed(0)
    for split, augment in ((s.train, False), (s.train, True), (s.val, False), (s.test, False)):
        xs = list(split.batches(16, shuffle=split is s.train, generator=gen, augment=augment))
        assert sum(len(y) for _, y in xs) == len(split)
        x, y = xs[0]
        assert x.shape == (min(16, len(split)), 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert _ys(s.test).tolist() == [c for c in range(3) for _ in range(5)]  # sorted class order, unshuffled


def test_imagefolder_augment_changes_batch_keeps_shape(tree):
    s = load_splits(_folder_cfg(tree))
    torch.manual_seed(0)  # workers=0: transforms draw from the global RNG
    plain = next(s.train.batches(8, shuffle=True, generator=torch.Generator().manual_seed(1), augment=False))
    aug = next(s.train.batches(8, shuffle=True, generator=torch.Generator().manual_seed(1), augment=True))
    assert aug[0].shape == plain[0].shape and torch.equal(aug[1], plain[1]) and not torch.equal(aug[0], plain[0])


def test_imagefolder_normalisation_and_channels(tree):
    raw = load_splits(_folder_cfg(tree), Preprocess(mean=(0.0,) * 3, std=(1.0,) * 3))
    x, _ = next(raw.val.batches(12, shuffle=False, generator=None, augment=False))
    assert x.min() >= 0 and x.max() <= 1
    default = load_splits(_folder_cfg(tree))  # no model stats: ImageNet's
    xd, _ = next(default.val.batches(12, shuffle=False, generator=None, augment=False))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(xd, (x - mean) / std)
    gray = load_splits(_folder_cfg(tree), Preprocess(channels=1, image_size=24))
    xg, _ = next(gray.train.batches(4, shuffle=False, generator=None, augment=True))
    assert xg.shape == (4, 1, 24, 24) and gray.in_channels == 1 and gray.image_size == 24


def test_imagefolder_shuffle_follows_the_generator(tree):
    s = load_splits(_folder_cfg(tree))

    def epoch(seed):
        return list(s.train.batches(16, shuffle=True, generator=torch.Generator().manual_seed(seed), augment=False))

    def order(seed):
        return torch.cat([y for _, y in epoch(seed)])

    first = order(5)
    assert torch.equal(first, order(5)) and not torch.equal(first, order(6))
    assert torch.equal(torch.sort(first).values, torch.sort(_ys(s.train)).values)  # a permutation of the split
    x1 = torch.cat([x for x, _ in epoch(5)])
    x2 = torch.cat([x for x, _ in epoch(5)])
    assert torch.equal(x1, x2)


def test_imagefolder_persistent_worker_matches_in_process(tree):
    inproc = load_splits(_folder_cfg(tree))
    pooled = load_splits(_folder_cfg(tree, workers=1))
    assert [p for p, _ in inproc.train.samples] == [p for p, _ in pooled.train.samples]
    for epoch in range(2):  # the second epoch reuses the cached loader and its live worker
        gen_a, gen_b = torch.Generator().manual_seed(epoch), torch.Generator().manual_seed(epoch)
        a = list(inproc.train.batches(16, shuffle=True, generator=gen_a, augment=False))
        b = list(pooled.train.batches(16, shuffle=True, generator=gen_b, augment=False))
        assert len(a) == len(b)
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True))
    loader, _ = pooled.train._loaders[(16, True, False)]
    assert loader.persistent_workers and loader.num_workers == 1 and loader._iterator is not None
    assert len(pooled.train._loaders) == 1


def test_imagefolder_identical_split_across_loads(tree):
    a = load_splits(_folder_cfg(tree))
    load_splits.cache_clear()
    b = load_splits(_folder_cfg(tree))
    assert a is not b
    assert all(x.samples == y.samples for x, y in ((a.train, b.train), (a.val, b.val), (a.test, b.test)))
    c = load_splits(_folder_cfg(tree, seed=1))
    assert c.val.samples != a.val.samples and c.test.samples == a.test.samples  # the test folder is fixed


def test_imagefolder_limit_and_to(tree):
    s = load_splits(_folder_cfg(tree, limit=10))
    assert len(s.train) == 10 and len(s.val) == 12
    moved = s.to(torch.device("cpu"))
    assert isinstance(moved, Splits) and moved.train is s.train  # same device: same split, same workers
    meta = s.train.to("meta")
    assert meta.device.type == "meta" and s.train.to("meta") is meta and len(meta) == 10


def test_inaturalist_without_test_folder_and_nested_root(tmp_path):
    _make_tree(tmp_path / "nature_12K" / "inaturalist_12K", test_dir="")
    s = load_splits(DatasetConfig(name="inaturalist", root=str(tmp_path / "nature_12K"), image_size=32, workers=0))
    # 60 train images: a stratified 20% carved as test, then 20% of the rest as val
    assert (len(s.train), len(s.val), len(s.test)) == (38, 10, 12) and s.classes == CLASSES
    assert np.all(_counts(s.test.labels, 3) == 4)


def test_imagefolder_test_folder(tmp_path):
    _make_tree(tmp_path, test_dir="test", test=2)
    s = load_splits(_folder_cfg(tmp_path))
    assert len(s.test) == 6 and all("/test/" in p for p, _ in s.test.samples)


def test_imagefolder_missing_layout_errors(tmp_path):
    with pytest.raises(DatasetNotFound, match=r"does not exist.*train/<class>"):
        load_splits(_folder_cfg(tmp_path / "nowhere"))
    (tmp_path / "val" / "ant").mkdir(parents=True)
    with pytest.raises(DatasetNotFound) as e:
        load_splits(_folder_cfg(tmp_path))
    assert str(tmp_path) in str(e.value) and "has no train/ folder" in str(e.value) and "train/<class>" in str(e.value)
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetNotFound, match="no class folders in"):
        load_splits(_folder_cfg(tmp_path))
    (tmp_path / "train" / "ant").mkdir()
    with pytest.raises(DatasetNotFound, match=r"without images.*\['ant'\]"):
        load_splits(_folder_cfg(tmp_path))
    with pytest.raises(ValueError, match="needs `root`"):
        DatasetConfig(name="imagefolder")


def test_relative_root_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert DatasetConfig(name="imagefolder", root="data/inat").root == str(tmp_path / "data" / "inat")


def test_fake_still_works():
    s = load_splits(DatasetConfig(name="fake", num_samples=100, num_classes=4), Preprocess(min_image_size=16))
    assert isinstance(s.train, TensorSplit) and s.num_classes == 4 and s.image_size == 32
    assert len(s.train) + len(s.val) + len(s.test) == 100


def test_an_image_folder_is_listed_as_torchvision_lists_it(tmp_path):
    """The listing the driver checks (no torch) and trials load is torchvision's make_dataset's: order,
    extensions in any case, nested folders, links followed, other files and empty classes left out."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    from trainables.core.data.listing import make_dataset as listed

    root = tmp_path / "train"
    for i, name in enumerate(["b", "a", "c", "d"]):
        (root / name / "deep" / "er").mkdir(parents=True)
        for j, ext in enumerate([".jpg", ".JPEG", ".png", ".txt", ".Tiff", ".webp", ""]):
            (root / name / ("deep/er" if j % 3 == 0 else "deep" if j % 3 == 1 else "") / f"{j}-{i}{ext}").touch()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.bmp").touch()
    (root / "a" / "linked").symlink_to(tmp_path / "elsewhere")
    index = {"a": 0, "b": 1, "c": 2, "d": 3, "missing": 4}
    ours = listed(str(root), index)
    assert ours == make_dataset(str(root), index, extensions=IMG_EXTENSIONS, allow_empty=True)
    assert len(ours) == 4 * 5 + 1


def test_links_that_loop_or_repeat_a_folder_list_each_image_once(tmp_path):
    """A link back up the tree made torchvision's walk endless (two such links: 2^40 paths, memory growing
    until it ran out); one link listed class a's images 41 times, copies landing in training and test."""
    from trainables.core.data.listing import make_dataset as listed

    root = tmp_path / "train"
    for c in "ab":
        (root / c / "sub").mkdir(parents=True)
        for i in range(3):
            (root / c / f"{i}.png").touch()
        (root / c / "sub" / "s.png").touch()
    (root / "a" / "l1").symlink_to(".")
    (root / "a" / "l2").symlink_to("..")
    (root / "a" / "sub" / "up").symlink_to("../..")
    (root / "b" / "again").symlink_to(root / "b" / "sub")
    out = listed(str(root), {"a": 0, "b": 1})
    (root / "a" / "to_b").symlink_to(root / "b")
    assert sorted(Path(p).relative_to(root).as_posix() for p, _ in out) == [
        "a/0.png", "a/1.png", "a/2.png", "a/sub/s.png",  # (l2 is the split's folder, holding class b)
        "b/0.png", "b/1.png", "b/2.png", "b/again/s.png"]  # (b/sub is b/again: listed once)
    assert listed(str(root), {"a": 0, "b": 1}) == out  # a link from one class into another adds nothing


def test_a_strip_of_an_image_is_not_resized_to_gigabytes():
    """A 257-byte 60000 x 1 PNG passed every check; its short side resized to 224 made the long side 13.4 million
    pixels (9 GB) in each loader worker and the cache build."""
    from trainables.core.data.folders import _image_transform

    transform = _image_transform(224, augment=False)
    strip = Image.new("RGB", (60000, 1))
    assert max(transform.transforms[0](strip).size) <= 4 * 224
    assert tuple(transform(strip).shape) == (3, 224, 224)
    photo = Image.new("RGB", (640, 480))  # an ordinary image: as before, short side to 224
    assert transform.transforms[0](photo).size == (298, 224)
    wide = Image.new("RGB", (1000, 240), (255, 255, 255))  # over 4:1: its centre square is still all image
    assert int(transform(wide).min()) == 255
