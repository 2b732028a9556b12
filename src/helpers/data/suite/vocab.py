"""The suite's data files, and the entity vocabularies that every generator shares.

Words and templates are data, not code: each generator module ``x.py`` of this package reads them
from ``x.yaml`` beside it through ``words(__file__, keys)``, once, at import. A missing, unreadable
or malformed file, or one whose names differ from those the module reads, stops the import with an
error naming the file, so a broken install or edit cannot produce a different suite quietly. The
study's fingerprint hashes each ``x.yaml`` with its module (``helpers.study.imports.code_hashes``).

Eval is kept disjoint from the pool by splitting vocabularies: ``split`` holds every fifth entry
(index % 5 == 2) out for eval; surnames come as two disjoint sets; items without a natural entity
are split by a stable key (``in_split``).
"""
from __future__ import annotations

import random
import zlib
from pathlib import Path
from types import SimpleNamespace

import yaml


def words(module_file: str, keys: str) -> SimpleNamespace:
    """The data file beside ``module_file`` (same name, ``.yaml``) as attributes, checked.

    ``keys``: the names the module reads, separated by spaces; the file must hold exactly these,
    each a non-empty list or mapping. A list of lists is a table: its rows become tuples.
    """
    path = Path(module_file).with_suffix(".yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise FileNotFoundError(f"{path}: the built-in suite's data file cannot be read ({e.strerror}); "
                                f"is the package installed with its data files?") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid YAML file: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of names to word lists, got {type(data).__name__}")
    wanted = keys.split()
    missing, unknown = [k for k in wanted if k not in data], [k for k in data if k not in wanted]
    if missing or unknown:
        raise ValueError(f"{path}: names missing {missing}, names no generator reads {unknown}")
    for key, value in data.items():
        if not isinstance(value, (list, dict)) or not value:
            raise ValueError(f"{path}: {key!r} must be a non-empty list or mapping, got {value!r}")
    return SimpleNamespace(**{k: _table(v) for k, v in data.items()})


def _table(value: list | dict) -> list | dict:
    if isinstance(value, list) and all(isinstance(row, list) for row in value):
        return [tuple(row) for row in value]
    return value


def split(seq: list) -> dict[str, list]:
    """``{"pool": ..., "eval": ...}``: every fifth entry (index % 5 == 2) held out for eval."""
    return {"pool": [x for i, x in enumerate(seq) if i % 5 != 2],
            "eval": [x for i, x in enumerate(seq) if i % 5 == 2]}


def in_split(key: str, split: str, k: dict) -> bool:
    """Whether an item with this stable ``key`` belongs to ``split`` (crc32 % 100 < heldout_percent: eval)."""
    return (zlib.crc32(key.encode("utf-8")) % 100 < k["heldout_percent"]) == (split == "eval")


W = words(__file__, "surnames given city_province products jobs hobbies venues events colors vehicles kinds_of_things")

SURNAMES: dict[str, list[str]] = W.surnames
GIVEN: list[str] = W.given
CITY_PROVINCE: list[tuple[str, str]] = W.city_province
CITIES = split([c for c, _ in CITY_PROVINCE])
PRODUCTS = split(W.products)
JOBS: list[str] = W.jobs
HOBBIES: list[str] = W.hobbies
VENUES: list[str] = W.venues
EVENTS: list[str] = W.events
COLORS: list[str] = W.colors
VEHICLES: list[str] = W.vehicles
KINDS_OF_THINGS: dict[str, list[str]] = W.kinds_of_things


def month_day(rng: random.Random) -> str:
    """A date such as 3月14日."""
    return f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日"


class Vocab:
    """The entity vocabularies of one split."""

    def __init__(self, split: str):
        self.split = split
        self.surnames = SURNAMES[split]
        self.cities = CITIES[split]
        self.products = PRODUCTS[split]

    def name(self, rng: random.Random, avoid: tuple = ()) -> str:
        while True:
            n = rng.choice(self.surnames) + rng.choice(GIVEN)
            if n not in avoid:
                return n

    def city(self, rng: random.Random, avoid: tuple = ()) -> str:
        while True:
            c = rng.choice(self.cities)
            if c not in avoid:
                return c


Item = tuple[str, str, str, dict]
"""What a generator returns: instruction, input, output, check."""
