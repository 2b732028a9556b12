"""The percentile bootstrap over items that every interval in the report comes from.

Each cell draws from its own generator, seeded by the study seed and the cell's name, so a
number does not change with the order cells are computed in.
"""
from __future__ import annotations

import math
import warnings
import zlib

import numpy as np


def cell_rng(seed: int, *keys) -> np.random.Generator:
    """A generator fixed by ``seed`` and a cell's name (order-independent results)."""
    tag = zlib.crc32("|".join(map(str, keys)).encode("utf-8"))
    return np.random.default_rng([int(seed), tag])


def boot_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means of ``values`` (1-D, no NaN): shape (n_boot,); empty -> all NaN."""
    n = len(values)
    if n == 0:
        return np.full(n_boot, np.nan)
    idx = rng.integers(0, n, size=(n_boot, n))
    return values[idx].mean(axis=1)


def joint_boot_means(matrix: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Column means of an items x scales ``matrix`` and their bootstrap, shape (n_boot, scales).

    Items are resampled as whole rows, so an item keeps its scores at every scale (the same
    questions are asked of every model) and a trend or curve fitted to each row of the bootstrap
    carries the pairing. NaN cells (a null judgment) are skipped in each mean; no rows -> NaN.
    """
    k = matrix.shape[1] if matrix.ndim == 2 else 0
    if len(matrix) == 0:
        return np.full(k, np.nan), np.full((n_boot, k), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(matrix, axis=0)
        idx = rng.integers(0, len(matrix), size=(n_boot, len(matrix)))
        return means, np.nanmean(matrix[idx], axis=1)


def percentile_ci(boot: np.ndarray) -> tuple[float, float]:
    boot = boot[~np.isnan(boot)]
    if boot.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(lo), float(hi)
