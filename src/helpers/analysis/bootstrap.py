"""The percentile bootstrap over items that every interval in the report comes from.

Each cell draws from its own generator, seeded by the study seed and the cell's name, so a
number does not change with the order cells are computed in.
"""
from __future__ import annotations

import math
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


def percentile_ci(boot: np.ndarray) -> tuple[float, float]:
    boot = boot[~np.isnan(boot)]
    if boot.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(lo), float(hi)
