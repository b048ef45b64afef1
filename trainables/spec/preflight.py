"""Preflight: what a trial would find out, the driver finds out first, before Ray starts any trial.

A spec whose trials would all fail on the same missing folder, corrupt image, wrong weights file or
user trainable that cannot be called never starts them: one SpecError (exit 2) instead of a Ray
traceback per trial. `tune validate` runs the same checks.
"""
from __future__ import annotations

import inspect
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from trainables.errors import SpecError, short
from trainables.spec.schema import ENVVAR, Spec, runs_module

SHOWN = 5  # bad files named in a message; the rest counted


def preflight(spec: Spec, *, say: Callable[[str], None] = print) -> Spec:
    """The spec, checked against the files and code it names; with skip_bad_images, the dataset's
    unreadable images are listed in dataset.exclude (said, with their count)."""
    if spec.scheduler.unused():
        say(f"note: the {spec.scheduler.name} scheduler does not use {', '.join(spec.scheduler.unused())}: ignored")
    if spec.trainable == "program":  # the program reads its own data
        _program(spec)
        return spec
    spec = _dataset(spec, say)
    if spec.trainable == "classifier":
        _weights(spec)
        _batches_of_one(spec)
    else:
        _trainable(spec)
    return spec


def _program(spec: Spec) -> None:
    """The script each trial runs exists (relative to where `tune run` starts, as W&B's agent reads it)."""
    file, command = spec.program.file, spec.program.command
    if "${program}" in command and not runs_module(command) and not Path(file).is_file():
        raise _error(spec, f"no such file {short(file)} (from {Path.cwd()})", "program.file")
    missing = runs_module(command) and "${interpreter}" in command and _module_missing(file)
    if missing:
        raise _error(spec, f"{missing} for `python -m` (from {Path.cwd()}); each trial would fail to start it",
                     "program.file")
    # the launcher (after ${env}, /usr/bin/env's PATH lookup): a missing one failed every trial, blaming the script
    launcher = next((c for c in command if c != "${env}"), "${interpreter}")
    if launcher.startswith("${") and launcher.endswith("}") and not launcher.startswith("${envvar:"):
        return  # ${interpreter}: this Python; an argument macro first is the user's odd choice, left to the trial
    launcher = ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), launcher)
    found = shutil.which(launcher)
    if found is None:
        what = "is not an executable file" if os.sep in launcher else "is not found on PATH"
        raise _error(spec, f"the command's {short(launcher)} {what}; each trial would fail to start it",
                     "program.command")


def _module_missing(name: str) -> str | None:
    """Why `python -m name` would not find it here (this Python, where `tune run` starts: where trials run
    it), or None. Looked up in the folders, part by part: nothing of the user's is imported (a package's
    __init__ would run in this process)."""
    import sys
    from importlib.machinery import PathFinder

    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        return f"{short(name)} is not a module name"
    if parts[0] in sys.builtin_module_names:
        return None
    path = [os.getcwd(), *sys.path]  # `python -m` puts the folder it starts in first
    for i, part in enumerate(parts):
        found = PathFinder.find_spec(part, path)
        if found is None or (i < len(parts) - 1 and not found.submodule_search_locations):
            return f"no module {short(name)}"
        path = list(found.submodule_search_locations or [])
    return None


def _error(spec: Spec, message: str, path: str) -> SpecError:
    return SpecError(message, file=spec.source, path=path)


# ---- the dataset ------------------------------------------------------------------------------

def _dataset(spec: Spec, say: Callable[[str], None]) -> Spec:
    from trainables.core.data import CIFAR10_FILES, MNIST_FILES, DatasetNotFound, data_root

    d = spec.dataset
    if d.root is not None and not d.download:
        root = Path(d.root)
        if not root.exists():
            raise _error(spec, f"{root} does not exist", "dataset.root")
        if not root.is_dir():
            raise _error(spec, f"{root} is not a folder", "dataset.root")
    if d.name in ("imagefolder", "inaturalist"):
        try:
            return _image_folder(spec, say)
        except DatasetNotFound as e:
            raise _error(spec, str(e), "dataset.root") from None
    if d.name == "fake" and d.num_samples < 5 * d.num_classes:
        raise _error(spec, f"{d.num_samples} images for {d.num_classes} classes: the stratified splits need at "
                           f"least 5 per class ({5 * d.num_classes})", "dataset.num_samples")
    if d.name in ("mnist", "cifar10") and not d.download:
        folder = data_root(d) / ("MNIST/raw" if d.name == "mnist" else "cifar-10-batches-py")
        names = MNIST_FILES if d.name == "mnist" else CIFAR10_FILES
        missing = [n for n in names if not (folder / n).is_file() and not (folder / f"{n}.gz").is_file()]
        if missing:
            raise _error(spec, f"{d.name}: {', '.join(missing)} not found in {folder}; put the files there, or set "
                               f"dataset.download: true where a network exists", "dataset.root")
    _builtin_splittable(spec)
    _memory_note(spec, say)
    return spec


def _memory_note(spec: Spec, say: Callable[[str], None]) -> None:
    """A built-in dataset is held whole, resized, as float32 tensors in every trial process: digits at 4096 px
    is ~120 GB, cifar10 at ImageNet weights' 224 px ~36 GB. Said when that is over half this machine."""
    from trainables.core.data.config import image_size_for
    from trainables.core.models import get_model
    from trainables.core.size import BUILTIN_SHAPES, dataset_shape
    from trainables.spec.checks import trial_configs

    d = spec.dataset
    if d.name not in BUILTIN_SHAPES:
        return
    n = {"digits": 1797, "fake": d.num_samples}.get(d.name) or _TRAIN_IMAGES[d.name] + _TEST_IMAGES
    _, channels, default = dataset_shape(d)
    model = spec.space.get("model")
    biggest = 0
    for name in (model.candidates() if model is not None and spec.trainable == "classifier" else ["cnn"]):
        try:
            e = get_model(name)
            (_, first), *_ = trial_configs(spec.space, name)
            pre = e.preprocess(e.params(**{k: v for k, v in first.items() if k in e.params.model_fields}))
        except (ValueError, TypeError):  # (checks.py has said why)
            continue
        size = image_size_for(d, pre, default)
        biggest = max(biggest, n * (pre.channels or channels) * size * size * 4)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if biggest > memory / 2:
        say(f"note: dataset {d.name} at that image size is ~{biggest / 1e9:.0f} GB of float32 tensors in every trial "
            f"process (this machine has {memory / 1e9:.0f} GB); lower dataset.image_size")


# the training sets of MNIST and CIFAR-10 (10 balanced classes), which come with a test set of 10,000
_TRAIN_IMAGES, _TEST_IMAGES = {"mnist": 60_000, "cifar10": 50_000}, 10_000


def _builtin_splittable(spec: Spec) -> None:
    """The splits of a built-in dataset, made here as each trial makes them (digits: its own labels; fake, mnist
    and cifar10 as balanced classes, near enough for what fails: a split too small for the classes)."""
    import numpy as np

    d = spec.dataset
    if d.name == "digits":
        from trainables.core.data.config import digits_labels

        labels = digits_labels()
    elif d.name == "fake":
        labels = np.arange(d.num_samples) % d.num_classes
    elif d.name in _TRAIN_IMAGES:
        labels = np.arange(_TRAIN_IMAGES[d.name]) % 10
    else:
        return
    classes = [str(c) for c in range(int(labels.max()) + 1)]
    _splittable(spec, list(labels), has_test=d.name in _TRAIN_IMAGES, classes=classes, key="dataset")


def _image_folder(spec: Spec, say: Callable[[str], None]) -> Spec:
    from trainables.core.data.listing import folder_layout, scan_folder

    d = spec.dataset
    classes, samples, test = scan_folder(*folder_layout(d))
    if d.exclude:  # already left out (an earlier run's skip_bad_images): not looked at again
        left_out = {str(Path(d.root) / f) for f in d.exclude}
        samples = [s for s in samples if s[0] not in left_out]
        test = [s for s in test if s[0] not in left_out] if test is not None else None
    if len(classes) < 2:
        raise _error(spec, f"{d.name}: a classifier needs at least two class folders; found {classes}", "dataset.root")
    _splittable(spec, [y for _, y in samples], has_test=test is not None, classes=classes)
    files = [p for p, _ in samples] + [p for p, _ in (test or [])]
    bad = _unreadable(files)
    if not bad:
        return spec
    root = Path(d.root)
    named = ", ".join(f"{p} ({why})" for p, why in bad[:SHOWN]) + (f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN
                                                                   else "")
    if not d.skip_bad_images:
        raise _error(spec, f"{len(bad)} of {len(files)} images do not decode: {named}. Fix or remove them, or set "
                           f"dataset.skip_bad_images: true to leave them out", "dataset.root")
    say(f"dataset: leaving out {len(bad)} of {len(files)} images that do not decode (skip_bad_images): {named}")
    exclude = tuple(sorted({*d.exclude, *(os.path.relpath(p, root) for p, _ in bad)}))
    gone = {p for p, _ in bad}
    kept = [y for p, y in samples if p not in gone]
    if len(set(kept)) < len(classes):
        raise _error(spec, "with the unreadable images left out, a class folder has no image left", "dataset.root")
    _splittable(spec, kept, has_test=test is not None, classes=classes)  # what is left, as each trial splits it
    if test is not None and all(p in gone for p, _ in test):
        raise _error(spec, "with the unreadable images left out, the test folder has no image left", "dataset.root")
    return spec.model_copy(update={"dataset": d.model_copy(update={"exclude": exclude})})


def _splittable(spec: Spec, labels: list[int], *, has_test: bool, classes: list[str],
                key: str = "dataset.root") -> None:
    """The stratified splits every trial makes, made once here: a class folder of one image, or more
    classes than a split has images, would otherwise fail every trial."""
    import numpy as np

    from trainables.core.data import TooFewImages, split_indices

    try:
        split_indices(np.array(labels), spec.dataset, has_test=has_test)
    except TooFewImages as e:
        counts = {c: labels.count(i) for i, c in enumerate(classes)}
        fewest = ", ".join(f"{c}: {n}" for c, n in sorted(counts.items(), key=lambda kv: kv[1])[:5])
        what = "train/ images" if key == "dataset.root" else "images"
        raise _error(spec, f"{spec.dataset.name}: the {what} cannot be split into train, validation"
                           f"{'' if has_test else ' and test'} with every class in each: {e} (fewest images: "
                           f"{fewest}); add images, or lower dataset.val_fraction / test_fraction", key) from None


def _decodes(path: str) -> str | None:
    """None if the image decodes, else why not. JPEGs decode at 1/8 scale (draft): every byte of the
    file is still read and checked, at a fraction of the cost."""
    import stat

    from PIL import Image

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe would block the open for ever
            return "not a regular file (a pipe, a socket or a device)"
        with Image.open(path) as im:
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
        return None
    except Exception as e:  # noqa: BLE001 - whatever PIL raises, the file is what is wrong
        return short(str(e) or type(e).__name__, 80).strip("'\"")


def _unreadable(files: list[str]) -> list[tuple[str, str]]:
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
        reasons = list(pool.map(_decodes, files, chunksize=64))
    return [(f, why) for f, why in zip(files, reasons, strict=True) if why is not None]


# ---- weights and user code --------------------------------------------------------------------

def _weights(spec: Spec) -> None:
    """Every `weights: PATH` a finetune trial may get exists and is a state_dict its backbone takes."""
    p = spec.space.get("weights")
    paths = [v for v in (p.candidates() if p is not None else []) if isinstance(v, str) and v not in ("imagenet",
                                                                                                   "none")]
    if not paths:
        return
    from trainables.core.models.finetune import check_weights_file

    backbones = spec.space.get("backbone")
    for path in paths:
        for backbone in (backbones.candidates() if backbones is not None else ["resnet18"]):
            try:
                check_weights_file(path, backbone=backbone)
            except (ValueError, OSError) as e:
                raise _error(spec, short(str(e), 300).strip("'\""), "parameters.weights") from None


def _batches_of_one(spec: Spec) -> None:
    """batch_size 1 with a model that has BatchNorm layers: every training batch fails (it normalises over
    the batch, and one example has no spread). Checked on the meta device, only where batch_size can be 1."""
    from trainables.core.training import Training

    p = spec.space.get("batch_size")
    if 1 not in (p.candidates() if p is not None else [Training().batch_size]):
        return
    from trainables.core.models import get_model
    from trainables.core.size import batch_norm_layers
    from trainables.spec.checks import trial_configs

    model = spec.space.get("model")
    for name in (model.candidates() if model is not None else ["cnn"]):
        for key, config in trial_configs(spec.space, name):
            if config.get("batch_size", 1) != 1 and key != "batch_size":
                continue
            try:
                layers = batch_norm_layers({**config, "batch_size": 1}, spec.dataset)
            except (ValueError, TypeError, RuntimeError):  # a configuration checks.py or the trial will name
                continue
            if layers:
                switch = " or batch_norm: false" if "batch_norm" in get_model(name).params.model_fields else ""
                drawn = f" with {key}={short(config[key])}" if key and key != "batch_size" else ""
                raise _error(spec, f"batch_size 1 cannot train model {name}{drawn}: its {layers} BatchNorm layers "
                                   f"need two or more examples in a batch; use batch_size >= 2{switch}",
                             "parameters.batch_size")


def _trainable(spec: Spec) -> None:
    """A user's trainable is callable with one argument, the trial's config."""
    import importlib

    module, _, name = spec.trainable.partition(":")
    fn = getattr(importlib.import_module(module), name)
    try:
        inspect.signature(fn).bind({})
    except TypeError:
        raise _error(spec, f"{spec.trainable} must take one argument, the trial's config; its signature is "
                           f"{name}{inspect.signature(fn)}", "trainable") from None
    except ValueError:
        pass  # no signature to read (a builtin): Ray finds out
