"""Figure 6: image folders decoded once per node (dataset.cache) against decoding every image every epoch.

6a  images/s of the data path alone (a training epoch's batches), cached vs decoding; augmented in its details
6b  an image-folder sweep of 4 trials with `tune run`, decoding vs cached, wall time
Both on a generated folder of JPEGs (400x320, as photos are resized) at 128 px.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from trainables.bench.output import Figure, check

NAMES = {"6a": "image folder data path: images/s cached over decoding every epoch",
         "6b": "image-folder sweep of 4 trials: wall time decoding over cached"}
TARGETS = {"6a": ">= 20", "6b": ">= 1.0"}

SPEC = """\
name: {name}
dataset: {{name: imagefolder, root: {root}, image_size: {size}, cache: {cache}}}
epochs: {epochs}
parameters:
  model: cnn
  filters: [8, 8, 16, 16, 16]
  dense_units: 32
  lr: {{loguniform: [1.0e-3, 1.0e-2]}}
search: {{algorithm: random, num_samples: 4, max_concurrent: 2, seed: 0}}
tracking: {{enabled: false}}
final: {{report: false, retrain_best: false}}
"""


def make_folder(root: Path, *, images: int, classes: int = 4, size=(400, 320), seed: int = 0) -> Path:
    """train/<class>/*.jpg: smooth colour fields with noise (JPEG-sized like photos), a tenth kept as val/."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w]
    for i in range(images):
        c = i % classes
        split = "val" if i % 10 == 9 else "train"
        folder = root / split / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.stack([(xs * (c + 1) + ys) % 256, (ys * (c + 2)) % 256, (xs + 40 * c) % 256], axis=-1)
        img = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def _images_per_second(split, *, augment: bool, batch: int = 64, min_seconds: float = 2.0) -> float:
    import torch

    gen = torch.Generator().manual_seed(0)
    next(iter(split.batches(batch, shuffle=True, generator=gen, augment=augment)))  # workers up, pages mapped
    t0, n = time.perf_counter(), 0
    while n < 3 * len(split) or time.perf_counter() - t0 < min_seconds:  # whole epochs, at least 3
        for x, _ in split.batches(batch, shuffle=True, generator=gen, augment=augment):
            n += len(x)
    return n / (time.perf_counter() - t0)


def data_path(root: Path, *, size: int, min_seconds: float = 2.0) -> dict[str, float]:
    """Images/s of one training epoch's batches from the decoded cache and from the files: as a trial
    has them by default, and with `augment: true` (random resized crops and flips)."""
    import torch

    from trainables.core.data import DatasetConfig, load_splits

    torch.set_num_threads(1)  # as a trial of resources.cpu: 1 has it
    cfg = dict(name="imagefolder", root=str(root), image_size=size, val_fraction=0.1)
    t0 = time.perf_counter()
    cached = load_splits(DatasetConfig(**cfg, cache="node"))
    build = time.perf_counter() - t0
    streamed = load_splits(DatasetConfig(**cfg, cache="none"))
    out = {"cache_build_seconds": build, "train_images": len(cached.train)}
    for augment, tag in ((False, ""), (True, "augmented_")):
        for way, split in (("cached", cached.train), ("decoded", streamed.train)):
            out[f"{tag}{way}_images_per_s"] = _images_per_second(split, augment=augment, min_seconds=min_seconds)
    return out


def _sweep(work: Path, root: Path, *, cache: str, size: int, epochs: int) -> float:
    from trainables.bench.sweeps import run_command

    spec = work / f"folder-{cache}.yaml"
    spec.write_text(SPEC.format(name=f"folder-{cache}", root=root, size=size, cache=cache, epochs=epochs))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own Ray: the trials get this environment
    env["TRAINABLES_CACHE_DIR"] = str(work / f"cache-{cache}")  # empty: the first trial builds it
    r = run_command([sys.executable, "-m", "trainables", "run", str(spec), "--storage", str(work / "results")],
                    cwd=work, log=work / f"folder-{cache}.log", env=env, inherit=False)
    if r["rc"] != 0:
        raise RuntimeError(f"the {cache} image-folder sweep failed (exit {r['rc']}):\n" + r["output"][-2000:])
    return r["seconds"]


def measure(work: Path, *, images: int = 1000, size: int = 128, epochs: int = 2) -> list[Figure]:
    work.mkdir(parents=True, exist_ok=True)
    os.environ["TRAINABLES_CACHE_DIR"] = str(work / "cache")  # this run's caches only, removed with the work folder
    root = make_folder(work / "images", images=images)
    d = data_path(root, size=size)
    ratio = d["cached_images_per_s"] / d["decoded_images_per_s"]
    augmented = d["augmented_cached_images_per_s"] / d["augmented_decoded_images_per_s"]
    shape = f"{images} JPEGs of 400x320 at {size} px, batches of 64, one thread (DataLoader: its workers)"
    fig_a = Figure("6a", NAMES["6a"], ratio, "ratio", TARGETS["6a"], check(ratio, ">=", 20.0), device="cpu",
                   details={"summary": f"{d['cached_images_per_s']:.0f} vs {d['decoded_images_per_s']:.0f} images/s; "
                                       f"augment: true {augmented:.1f}x ({d['augmented_cached_images_per_s']:.0f} vs "
                                       f"{d['augmented_decoded_images_per_s']:.0f}: crops resampled on the CPU); "
                                       f"cache built once in {d['cache_build_seconds']:.1f} s", "shape": shape,
                            "augmented_ratio": augmented, **d})
    decoding = _sweep(work, root, cache="none", size=size, epochs=epochs)
    cached = _sweep(work, root, cache="node", size=size, epochs=epochs)
    fig_b = Figure("6b", NAMES["6b"], decoding / cached, "ratio", TARGETS["6b"], check(decoding / cached, ">=", 1.0),
                   device="cpu", details={"summary": f"{decoding:.1f} s decoding vs {cached:.1f} s cached (cache "
                                                     f"built by the first trial)",
                                          "shape": f"4 trials x {epochs} epochs, 2 at a time, {shape}",
                                          "decoding_seconds": decoding, "cached_seconds": cached})
    return [fig_a, fig_b]
