"""Image folders decoded once per node (dataset.cache): the same pixels as streaming, built once under a
lock, rebuilt when damaged or when the files change, and what happens where there is no room."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch

from tests.test_data import _folder_cfg, _make_tree
from trainables.core.data import load_splits
from trainables.core.data.cache import CachedSplit, CacheUnavailable, crop_boxes, decoded


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINABLES_CACHE_DIR", str(tmp_path / "cache"))
    load_splits.cache_clear()
    yield
    load_splits.cache_clear()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return _make_tree(tmp_path_factory.mktemp("cached") / "data")


def _cached(root, **kw):
    return load_splits(_folder_cfg(root, cache="node", **kw))


def _all(split, **kw):
    xs, ys = zip(*split.batches(16, shuffle=False, generator=None, **kw), strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_the_cache_holds_the_pixels_streaming_decodes(tree, tmp_path):
    cached, streamed = _cached(tree), load_splits(_folder_cfg(tree))
    assert isinstance(cached.train, CachedSplit) and (cached.classes, cached.image_size) == (streamed.classes, 32)
    for a, b in ((cached.train, streamed.train), (cached.val, streamed.val), (cached.test, streamed.test)):
        assert a.labels == b.labels
        xa, ya = _all(a, augment=False)
        xb, yb = _all(b, augment=False)
        assert torch.equal(ya, yb)
        torch.testing.assert_close(xa, xb, rtol=0, atol=1e-5)  # Resize + CenterCrop decoded once: the same bytes
    assert len(list((tmp_path / "cache").glob("*.u8"))) == 1  # one array for every split


def test_cached_batches_shuffle_augment_and_shard_like_the_others(tree):
    s = _cached(tree).train
    gen = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    a = list(s.batches(16, shuffle=True, generator=gen(1), augment=True))
    b = list(s.batches(16, shuffle=True, generator=gen(1), augment=True))
    plain = list(s.batches(16, shuffle=True, generator=gen(1), augment=False))
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b, strict=True))  # seeded: a resumed trial's epoch
    assert torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in plain]))
    assert a[0][0].shape == plain[0][0].shape == (16, 3, 32, 32) and not torch.equal(a[0][0], plain[0][0])
    halves = [torch.cat([y for _, y in s.batches(8, shuffle=False, shard=(r, 2))]) for r in range(2)]
    assert len(halves[0]) == len(halves[1]) == len(s) // 2


def test_crop_boxes_lie_inside_the_image_and_keep_torchvisions_scale():
    boxes = crop_boxes(2000, 64, torch.Generator().manual_seed(0))
    assert torch.equal(boxes[:, 0], torch.arange(2000).float())
    x1, y1, x2, y2 = boxes[:, 1:].T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 64).all() and (y2 <= 64).all()
    area = (x2 - x1) * (y2 - y1) / 64**2
    assert 0.2 <= area.min() and area.max() <= 1.0 and 0.55 < area.mean() < 0.7  # scale (0.25, 1), ratio 3/4..4/3


def _counting(calls: list, delay: float = 0.0, fail_after: int | None = None):
    def decode(files):
        calls.append(len(files))
        for start in range(0, len(files), 4):
            if fail_after is not None and start >= fail_after:
                raise RuntimeError("the builder died")
            time.sleep(delay)
            yield start, np.full((min(4, len(files) - start), 3, 8, 8), start, dtype=np.uint8)
    return decode


def test_trials_building_at_once_decode_once_and_share_the_file(tree):
    files = sorted(str(p) for p in tree.rglob("*.jpg"))
    calls, out = [], []
    threads = [threading.Thread(target=lambda: out.append(decoded(files, size=8, mode="RGB", required=True,
                                                                   decode=_counting(calls, delay=0.01))))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [len(files)] and len(out) == 3  # the lock: one builder, two waited and mapped its file
    assert all(np.array_equal(a, out[0]) for a in out) and out[0][4, 0, 0, 0] == 4


def test_a_damaged_or_half_built_cache_is_rebuilt_and_a_changed_file_gets_a_new_one(tree, tmp_path):
    files = sorted(str(p) for p in tree.rglob("*.jpg"))
    calls: list = []
    with pytest.raises(RuntimeError, match="died"):  # the builder dies half way: nothing is left to be mapped
        decoded(files, size=8, mode="RGB", required=True, decode=_counting(calls, fail_after=8))
    assert not list((tmp_path / "cache").glob("*.u8")) and not list((tmp_path / "cache").glob("*.tmp"))
    decoded(files, size=8, mode="RGB", required=True, decode=_counting(calls))
    (data,) = (tmp_path / "cache").glob("*.u8")
    data.write_bytes(data.read_bytes()[:100])  # cut short (a full disk, a copy interrupted)
    assert decoded(files, size=8, mode="RGB", required=True, decode=_counting(calls)).shape == (len(files), 3, 8, 8)
    assert len(calls) == 3
    edited = tmp_path / "edited.jpg"
    edited.write_bytes(open(files[0], "rb").read())
    decoded([*files[1:], str(edited)], size=8, mode="RGB", required=True, decode=_counting(calls))
    os.utime(edited, (1, 1))  # the same file, changed since: not the cache of before
    decoded([*files[1:], str(edited)], size=8, mode="RGB", required=True, decode=_counting(calls))
    assert len(calls) == 5 and len(list((tmp_path / "cache").glob("*.u8"))) == 3


def test_no_room_for_the_cache_streams_with_auto_and_is_an_error_with_node(tree, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("TRAINABLES_CACHE_DIR", str(blocker / "cache"))  # cannot be made
    assert type(load_splits(_folder_cfg(tree, cache="auto")).train).__name__ == "FolderSplit"
    load_splits.cache_clear()
    with pytest.raises(CacheUnavailable, match="TRAINABLES_CACHE_DIR"):
        load_splits(_folder_cfg(tree, cache="node"))


def test_auto_decodes_every_epoch_a_dataset_the_memory_cannot_hold(tree, tmp_path, monkeypatch):
    from trainables.core.data import cache

    files = sorted(str(p) for p in tree.rglob("*.jpg"))
    monkeypatch.setattr(cache, "_memory", lambda: 1000)  # a machine of 1,000 bytes: 3 x 8 x 8 x 75 do not fit
    assert decoded(files, size=8, mode="RGB", required=False, decode=_counting([])) is None
    assert decoded(files, size=8, mode="RGB", required=True, decode=_counting([])).shape == (len(files), 3, 8, 8)


def test_the_default_folder_must_be_this_users_own(tree, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.delenv("TRAINABLES_CACHE_DIR")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    elsewhere = tmp_path / "someone-elses"
    elsewhere.mkdir()
    (tmp_path / f"trainables-cache-{os.getuid()}").symlink_to(elsewhere)  # planted before our first run
    files = sorted(str(p) for p in tree.rglob("*.jpg"))
    assert decoded(files, size=8, mode="RGB", required=False, decode=_counting([])) is None
    with pytest.raises(CacheUnavailable, match="not this user's own"):
        decoded(files, size=8, mode="RGB", required=True, decode=_counting([]))
    assert not list(elsewhere.iterdir())


def test_a_dead_builders_temporary_file_is_removed_by_the_next_build(tree, tmp_path):
    files = sorted(str(p) for p in tree.rglob("*.jpg"))
    cache = tmp_path / "cache"
    cache.mkdir()
    left = cache / "0123abcd.4242.tmp"  # its builder was killed: nobody holds 0123abcd.lock
    left.write_bytes(b"half")
    decoded(files, size=8, mode="RGB", required=True, decode=_counting([]))
    assert not left.exists()
