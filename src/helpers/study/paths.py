"""The checkout this package lives in, and paths the config names relative to it.

Below the config modules: the schema's cross-field rules (``helpers.study.rules``) and loading
(``helpers.study.loading``) both read paths the same way.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
"""The checkout this package lives in (src layout): configs and notebooks are found from here."""


def resolve(path: str | Path) -> Path:
    """Relative paths are read from the checkout, so notebooks work from any working directory."""
    path = Path(os.path.expanduser(str(path)))
    return path if path.is_absolute() else REPO / path
