"""Seeded stratified splitting: scikit-learn's `train_test_split(..., stratify=...)`, index for index.

A port of StratifiedShuffleSplit's first split (and `_approximate_mode`), so that a trial process
does not import scikit-learn's model_selection (1.1 s and ~70 MB per process on 2 cores) for
30 lines of NumPy. tests/test_data.py checks it against scikit-learn on random label sets.
"""
from __future__ import annotations

from math import ceil

import numpy as np

from trainables.core.data.config import DatasetConfig


class TooFewImages(ValueError):
    """A class, or a split, too small for a stratified split; the message says which and how to fix it."""


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of each class n_draws takes (the hypergeometric's approximate mode); ties broken by rng."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held), sorted, with `fraction` of every class held out; seeded and order-independent.
    The same indices as scikit-learn's train_test_split(arange(n), test_size=fraction, stratify=labels,
    random_state=seed)."""
    labels = np.asarray(labels)
    n = len(labels)
    n_test = ceil(fraction * n)
    n_train = n - n_test
    classes, y_indices, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if n_train <= 0 or n_test >= n:
        raise TooFewImages(f"{n} images cannot be split {1 - fraction:.0%} / {fraction:.0%}")
    if counts.min() < 2:
        few = [c.item() if hasattr(c, "item") else c for c in classes[counts < 2]][:10]
        raise TooFewImages(f"classes {few} have a single image; every class needs at least 2 in each split it is "
                           f"divided into")
    if min(n_train, n_test) < len(classes):
        raise TooFewImages(f"a split of {min(n_train, n_test)} images cannot hold one of each of {len(classes)} "
                           f"classes ({n} images split {1 - fraction:.0%} / {fraction:.0%})")
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        members = class_indices[i].take(rng.permutation(counts[i]), mode="clip")
        train.extend(members[: n_i[i]])
        test.extend(members[n_i[i] : n_i[i] + t_i[i]])
    # (scikit-learn then shuffles both lists: no matter once sorted)
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(test, dtype=np.int64))


def split_indices(
    labels: np.ndarray, cfg: DatasetConfig, *, has_test: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices into labels: test carved first when the dataset has none (else
    empty), then val from the rest, then `limit` on train; all stratified and seeded by cfg.seed."""
    idx = np.arange(len(labels))
    test = np.zeros(0, dtype=np.int64)
    if not has_test:
        idx, test = stratified_split(labels, cfg.test_fraction, cfg.seed)
    tr, va = stratified_split(labels[idx], cfg.val_fraction, cfg.seed)
    tr, va = idx[tr], idx[va]
    if cfg.limit is not None and len(tr) > cfg.limit:
        tr = _limited(tr, labels, cfg.limit, cfg.seed)
    return tr, va, test


def _limited(tr: np.ndarray, labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """`limit` of the training indices, stratified: one of each class, the rest in proportion (a plain
    sample of 10 from 100/6/6 images held only the first class in 3 seeds of 5)."""
    classes, y, counts = np.unique(labels[tr], return_inverse=True, return_counts=True)
    if limit < len(classes):
        raise TooFewImages(f"dataset.limit {limit} is fewer than the {len(classes)} classes: every class needs a "
                           f"training image")
    rng = np.random.RandomState(seed)
    take = 1 + _approximate_mode(counts - 1, limit - len(classes), rng)
    chosen = [rng.permutation(tr[y == i])[:take[i]] for i in range(len(classes))]
    return np.sort(np.concatenate(chosen).astype(np.int64))
