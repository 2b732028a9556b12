"""Loading a study config: YAML files with ``extends:``, ``--set`` overrides, the checked ``StudyConfig``, and
where a study's data and reports go.

A key given twice in one mapping is an error (PyYAML would keep the last); a config that fails the schema
(``helpers.study.config``) or its cross-field rules (``helpers.study.rules``) stops with ``ConfigError``
naming the file and every key at fault.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from helpers.study.config import StudyConfig
from helpers.study.paths import REPO, resolve


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error.

    PyYAML keeps the last of two equal keys without a word, so two judges named alike under ``judge.others``
    (or a section written twice) would silently become one."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping (first at line {seen[key] + 1}); "
                                "a second entry would silently replace the first", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A config file as a mapping, with ``extends: other.yaml`` resolved.

    ``extends`` names another config, relative to this file's folder; this file's keys are laid
    over it section by section (a mapping merges key by key, anything else replaces), so a
    variant of the default study says only what differs.
    """
    path = resolve(path)
    if path in _seen:
        raise ConfigError(f"{path}: extends itself through {' -> '.join(map(str, _seen + (path,)))}")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        where = f" (extended by {_seen[-1]})" if _seen else ""
        raise ConfigError(f"{path}: config file not found{where}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: expected the path of one config file, got {parent!r}")
    return merge(read_config(path.parent / parent, _seen + (path,)), raw)


def merge(base: dict, over: dict) -> dict:
    """``over`` laid over ``base``: mappings merge key by key, other values replace."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_override(raw: dict, override: str) -> dict:
    """``section.key=value`` (the value read as YAML: ``1e-4``, ``[64, 128]``, ``true``) set in ``raw``.

    >>> apply_override({"train": {"lr": 0.1}}, "train.lr=1e-4")
    {'train': {'lr': 0.0001}}
    """
    key, sep, value = override.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {override!r}: expected section.key=value, e.g. train.lr=1e-4")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {override!r}: the value is not valid YAML: {e}") from None
    if isinstance(parsed, float) or (isinstance(parsed, str) and _FLOAT.match(parsed)):
        parsed = float(parsed)  # YAML 1.1 reads "1e-4" as a string; a config number never is one
    out = dict(raw)
    node = out
    for i, part in enumerate(parts[:-1]):
        child = node.get(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {override!r}: {'.'.join(parts[:i + 1])} is not a section")
        node[part] = dict(child)
        node = node[part]
    node[parts[-1]] = parsed
    return out


_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def load_config(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> StudyConfig:
    """The study config in ``path`` (after ``extends``), with ``--set`` overrides applied and checked."""
    path = resolve(path)
    raw = read_config(path)
    for override in overrides:
        raw = apply_override(raw, override)
    try:
        cfg = StudyConfig.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            # our cross-field checks already start their message with the full key
            problems.append(msg if re.match(r"^[a-z_.]+(\.[A-Za-z0-9_.-]+)?(, [a-z_.]+(\.[A-Za-z0-9_.-]+)?)*: ", msg)
                            else f"{key}: {msg}")
        given = f" with --set {' '.join(overrides)}" if overrides else ""
        raise ConfigError(f"{path}{given}: invalid config\n  " + "\n  ".join(problems)) from None
    return cfg


def study_dir(cfg: StudyConfig, root: str | Path | None = None) -> Path:
    return resolve(root or REPO) / "data" / cfg.study


def report_dir(cfg: StudyConfig, root: str | Path | None = None) -> Path:
    return resolve(root or REPO) / "reports" / cfg.study
