"""An image folder's layout and files (train/<class>/*.jpg, val/ or test/), listed as torchvision's
ImageFolder lists them, without importing torch: the driver checks folders before any trial.

`make_dataset` is torchvision.datasets.folder.make_dataset's walk (sorted classes, os.walk with
links followed, sorted names, the same extensions), except that a folder reached twice through links
is listed once; tests/test_data.py checks it against torchvision.
"""
from __future__ import annotations

import os
from pathlib import Path

from trainables.core.data.config import DatasetConfig, DatasetNotFound

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's

_LAYOUT = ("{root}/train/<class>/<image>.jpg with one folder per class, "
           "and optionally {root}/val/ (or test/) laid out the same as the test split")


def make_dataset(directory: str, class_to_idx: dict[str, int], extensions=IMG_EXTENSIONS) -> list[tuple[str, int]]:
    """(path, class index) of every file with one of the extensions under directory/<class>/, in
    torchvision's order; classes without a folder or a file are simply absent."""
    out = []
    # the split's folder and every other class's: a link into them would list their images in this class too
    others = {c: _inode(os.path.join(directory, c)) for c in class_to_idx} | {"": _inode(directory)}
    for target_class in sorted(class_to_idx):
        target_dir = os.path.join(directory, target_class)
        if not os.path.isdir(target_dir):
            continue
        barred = {i for c, i in others.items() if c != target_class and i is not None}
        for root, _, fnames in sorted(_walk(target_dir, barred)):
            for fname in sorted(fnames):
                path = os.path.join(root, fname)
                if path.lower().endswith(extensions):
                    out.append((path, class_to_idx[target_class]))
    return out


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _walk(top: str, barred: set[tuple[int, int]]):
    """os.walk with links followed, entering each real folder once and none of `barred`: a link back up the
    tree (which made torchvision's walk endless, its listing growing until memory ran out), to a folder
    already walked or to another class adds nothing (its images would be listed twice, under two labels,
    and land in both training and test)."""
    seen = set(barred)
    for root, dirs, files in os.walk(top, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []  # not entered again
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()  # the first path to a folder is the one kept
        yield root, dirs, files


def folder_layout(cfg: DatasetConfig) -> tuple[Path, Path | None]:
    """(train/, val/ or test/ or None); a root holding a single dataset folder is entered
    (nature_12K/ -> nature_12K/inaturalist_12K/, as the iNaturalist zip unpacks)."""
    root = Path(cfg.root).expanduser()
    if not (root / "train").is_dir() and root.is_dir():
        inner = [d for d in root.iterdir() if (d / "train").is_dir()]
        root = inner[0] if len(inner) == 1 else root
    train = root / "train"
    if not train.is_dir():
        if not root.is_dir():
            where = "does not exist"
        else:
            where = f"has no train/ folder (it holds: {sorted(d.name for d in root.iterdir())[:10]})"
        raise DatasetNotFound(f"{cfg.name}: {root} {where}; expected {_LAYOUT.format(root=root)}")
    held = [root / d for d in ("val", "test") if (root / d).is_dir()]
    if len(held) == 2:  # the one with class folders of images (Kaggle's test/ is often flat, unlabelled)
        labelled = [d for d in held if _has_images(d.iterdir())]
        if len(labelled) == 2:  # which one is the test split would be a guess
            raise DatasetNotFound(f"{cfg.name}: {root} has both val/ and test/ with class folders; one held-out "
                                  f"folder is the test split (validation is carved from train/ by val_fraction): "
                                  f"remove or rename the other")
        held = labelled or held
    return train, (held[0] if held else None)


def _has_images(entries) -> bool:
    """Whether any class folder among entries holds an image file, at its top."""
    for d in entries:
        if d.is_dir() and not d.name.startswith(".") and any(
                f.name.lower().endswith(IMG_EXTENSIONS) for f in d.iterdir()):
            return True
    return False


def scan_folder(train_dir: Path, test_dir: Path | None):
    """(classes sorted by folder name, train samples, test samples or None) as (path, label) lists."""
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetNotFound(f"no class folders in {train_dir}; expected {_LAYOUT.format(root=train_dir.parent)}")
    index = {c: i for i, c in enumerate(classes)}
    samples = make_dataset(str(train_dir), index)
    empty = sorted(set(classes) - {classes[y] for _, y in samples})
    if empty:
        raise DatasetNotFound(f"class folders without images ({', '.join(IMG_EXTENSIONS)}) in {train_dir}: {empty}")
    test = make_dataset(str(test_dir), index) if test_dir else None
    if test_dir is not None:
        unknown = sorted(d.name for d in test_dir.iterdir() if d.name not in index and _has_images([d]))
        if unknown:  # their images would be left out of the test split without a word
            raise DatasetNotFound(f"class folders in {test_dir} that {train_dir} has not: {unknown[:10]} "
                                  f"(train/'s classes: {classes[:10]}); the test split holds train/'s classes only")
    if test is not None and not test:
        raise DatasetNotFound(
            f"no images of the classes {classes} in {test_dir}; expected {_LAYOUT.format(root=test_dir.parent)}")
    return classes, _once(samples, classes, test, test_dir), test


def _once(samples: list[tuple[str, int]], classes: list[str], test: list[tuple[str, int]] | None,
          test_dir: Path | None) -> list[tuple[str, int]]:
    """The training samples with each real file once. A file reached through links under two classes, or
    also in the test folder, is refused: a label that is a guess, or test images the model trained on."""
    seen: dict[tuple[int, int], tuple[str, int]] = {}  # (device, inode): symbolic and hard links alike
    out = []
    for path, y in samples:
        real = _inode(path)
        if real in seen:
            if seen[real][1] != y:
                raise DatasetNotFound(f"{path} and {seen[real][0]} are one file (through a link) under two classes, "
                                      f"{classes[y]} and {classes[seen[real][1]]}: keep it in one")
            continue  # the same image twice in one class: it could land in both training and validation
        if real is not None:
            seen[real] = (path, y)
        out.append((path, y))
    shared = [(p, seen[i][0]) for p, _ in test or [] if (i := _inode(p)) in seen]
    if shared:
        raise DatasetNotFound(f"{len(shared)} of {len(test)} images in {test_dir} are files of train/ (through links), "
                              f"e.g. {shared[0][0]} is {shared[0][1]}: the test split would score images the model "
                              f"trained on")
    return out
