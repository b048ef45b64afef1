"""Image folders decoded once per node (dataset.cache): every image resized to the trial's size, as
one uint8 file that every trial process on the node memory-maps, and CachedSplit, which batches it.
`cache: auto` keeps one only where it fits in half the machine's memory and the disk has room.

The first trial on a node to need a cache builds it under a file lock (the others wait, then map
the same file; a builder that dies releases the lock and leaves only a temporary file), writes it
to a temporary name and renames it into place, so a cache file is whole or absent. The key is
the list of files (path, size, mtime), the size and the colour mode: an edited dataset gets a new cache.
Augmentation happens on the batch tensors (a random resized crop per image with roi_align, and
flips), on the GPU when the trial has one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from trainables.core.data.tensors import shard_order

VERSION = 1  # of the file format and the decoding transform: a change makes new keys
STALE_SECONDS = 3 * 24 * 3600  # caches unused this long are removed when another is built
CROP_SCALE, CROP_RATIO = (0.25, 1.0), (3 / 4, 4 / 3)  # as folders.py's RandomResizedCrop


class CacheUnavailable(OSError):
    """No room (or no write access) for a cache where dataset.cache: node asks for one."""


def cache_root() -> Path:
    """$TRAINABLES_CACHE_DIR, else a folder of this user's in the node's temporary directory (a local
    disk whose pages the kernel shares between the processes mapping a file; /dev/shm works too)."""
    explicit = os.environ.get("TRAINABLES_CACHE_DIR")
    return Path(explicit) if explicit else Path(tempfile.gettempdir()) / f"trainables-cache-{os.getuid()}"


def _private(root: Path) -> None:
    """The default folder sits in a directory every user writes to: it must be this user's own (not a
    link, nor writable by others), or someone else could hand the trials their images. A folder named
    by TRAINABLES_CACHE_DIR is the user's choice."""
    import stat

    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.environ.get("TRAINABLES_CACHE_DIR"):
        return
    st = os.lstat(root)
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise OSError(f"{root} is not this user's own folder")


def cache_key(files: list[str], size: int, mode: str) -> str:
    h = hashlib.sha256(f"{VERSION}|{size}|{mode}".encode())
    for f in files:
        st = os.stat(f)
        # the change time too: a copy that keeps size and mtime (cp -p, rsync -a) is a new file (not the inode,
        # which FUSE mounts number afresh after a while: each trial would decode everything again)
        h.update(f"\n{f}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}".encode())
    return h.hexdigest()[:32]


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl

    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released by the kernel if this process dies
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _valid(data: Path, meta: Path, shape: tuple[int, ...]) -> bool:
    try:
        info = json.loads(meta.read_text())
        return info.get("shape") == list(shape) and data.stat().st_size == math.prod(shape)
    except (OSError, ValueError, AttributeError):
        return False


def _builder_gone(lock: Path) -> bool:
    """Whether no process holds `lock` (a builder that died released it)."""
    import fcntl

    try:
        with open(lock, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
        return True
    except OSError:
        return False


def _evict(root: Path, keep: str) -> None:
    """Caches nobody opened for STALE_SECONDS, and temporary files of builders that died."""
    now = time.time()
    for p in root.glob("*"):
        with contextlib.suppress(OSError):
            stem = p.name.split(".")[0]
            if stem == keep:
                continue
            if p.suffix == ".tmp":
                if _builder_gone(root / f"{stem}.lock"):
                    p.unlink()
                continue
            meta = root / f"{stem}.json"
            if now - (meta.stat().st_mtime if meta.exists() else p.stat().st_mtime) > STALE_SECONDS:
                p.unlink()


def decoded(files: list[str], *, size: int, mode: str, decode, required: bool) -> np.ndarray | None:
    """The (N, C, size, size) uint8 array of `files`, memory-mapped from the node's cache, built here
    if no trial has yet. `decode(files)` yields (start, uint8 batch) in order. None when there is no
    room for it and it is not `required` (dataset.cache: auto streams instead)."""
    channels = 3 if mode == "RGB" else 1
    shape = (len(files), channels, size, size)
    root = cache_root()
    key = cache_key(files, size, mode)
    data, meta = root / f"{key}.u8", root / f"{key}.json"
    try:
        if not required and math.prod(shape) > _memory() / 2:
            return None  # a cache the page cache cannot hold is read from disk: no faster than decoding
        _private(root)
        if not _valid(data, meta, shape):
            with _locked(root / f"{key}.lock"):
                if not _valid(data, meta, shape):
                    _build(data, meta, shape, files, decode, root, key)
        os.utime(meta)  # in use: not stale
        return np.memmap(data, dtype=np.uint8, mode="r", shape=shape)
    except OSError as e:
        if required:
            raise CacheUnavailable(f"dataset.cache: node: cannot keep {math.prod(shape) / 1e9:.2f} GB of decoded "
                                   f"images in {root} ({e}); set TRAINABLES_CACHE_DIR to a folder with room, or "
                                   f"dataset.cache: none to decode every epoch") from None
        return None


def _memory() -> int:
    """This machine's memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _build(data: Path, meta: Path, shape, files, decode, root: Path, key: str) -> None:
    _evict(root, key)
    need = math.prod(shape)
    free = shutil.disk_usage(root).free
    if need > free * 0.8:  # leave the node its room
        raise OSError(f"{need / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free")
    tmp = root / f"{key}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:  # the blocks reserved now: a disk that fills up later fails here, not
            os.posix_fallocate(f.fileno(), 0, need)  # with SIGBUS on a write into the mapped file
        array = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=shape)  # raw bytes: the shape is in the .json
        try:
            for start, batch in decode(files):
                array[start : start + len(batch)] = batch
        except OSError as e:  # an image that does not decode (PIL's errors are OSErrors): not a cache fault
            raise RuntimeError(f"decoding the image folder into the cache: {e}") from e
        array.flush()
        del array
        os.replace(tmp, data)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    meta.write_text(json.dumps({"shape": list(shape), "files": len(files), "built": time.time()}))


def crop_boxes(n: int, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """RandomResizedCrop's boxes for n square images of `size`, as roi_align takes them: (k, x1, y1, x2, y2).
    torchvision's rule, vectorised: 10 tries of area and aspect ratio each, else the whole image."""
    area = size * size
    s = torch.empty(n, 10).uniform_(*CROP_SCALE, generator=generator) * area
    r = torch.exp(torch.empty(n, 10).uniform_(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator=generator))
    w, h = torch.sqrt(s * r).round(), torch.sqrt(s / r).round()
    ok = (w > 0) & (h > 0) & (w <= size) & (h <= size)
    pick = ok.float().argmax(dim=1)
    rows = torch.arange(n)
    found = ok.any(dim=1)
    w = torch.where(found, w[rows, pick], torch.tensor(float(size)))
    h = torch.where(found, h[rows, pick], torch.tensor(float(size)))
    i = torch.floor(torch.rand(n, generator=generator) * (size - h + 1))
    j = torch.floor(torch.rand(n, generator=generator) * (size - w + 1))
    return torch.stack([rows.float(), j, i, j + w, i + h], dim=1)


class CachedSplit:
    """A split of an image folder read from the node's decoded cache: uint8 batches by index,
    made float, augmented (random resized crop, flip) and normalised on the device."""

    def __init__(self, array: np.ndarray, index: np.ndarray, labels: list[int], *, mean, std,
                 device: torch.device | str = "cpu"):
        self.array, self.index, self.labels_ = array, np.asarray(index, dtype=np.int64), list(labels)
        self.mean_std = (tuple(mean), tuple(std))
        self.device = torch.device(device)
        m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self._scale, self._shift = (1 / (255 * s)).to(self.device), (-m / s).to(self.device)
        self._y = torch.tensor(self.labels_, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labels(self) -> list[int]:
        return self.labels_

    def to(self, device: torch.device | str) -> "CachedSplit":
        if torch.device(device) == self.device:
            return self
        return CachedSplit(self.array, self.index, self.labels_, mean=self.mean_std[0], std=self.mean_std[1],
                           device=device)

    def batches(self, batch_size, *, shuffle, generator=None, augment=False, shard=None):
        from torchvision.ops import roi_align

        n = len(self.index)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        if shard is not None:
            order = shard_order(order, shard)
        pinned = self.device.type == "cuda"
        for start in range(0, len(order), batch_size):
            take = order[start : start + batch_size]
            x = torch.from_numpy(self.array[self.index[take.numpy()]])  # a copy out of the mapped file
            y = self._y[take]
            if pinned:
                x, y = x.pin_memory(), y.pin_memory()
            x = x.to(self.device, non_blocking=pinned).float()
            if augment:
                size = x.shape[-1]
                boxes = crop_boxes(len(x), size, generator).to(self.device)
                # bilinear (one sample per output pixel): a crop is only ever enlarged
                x = roi_align(x, boxes, output_size=(size, size), sampling_ratio=1, aligned=True)
                flip = (torch.rand(len(x), generator=generator) < 0.5).to(self.device)
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            yield x.mul_(self._scale).add_(self._shift), y.to(self.device, non_blocking=pinned)  # (x/255 - mean) / std
