"""The teacher's request: the template file, the examples shown, and the cache key of each request."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from helpers.study.categories import CATEGORIES, canonical_category
from helpers.study.config import StudyConfig
from helpers.study.paths import resolve


class SelfInstructError(RuntimeError):
    """The stage cannot run or must stop (missing key, refused key, bad seeds or prompt file)."""


class SelfInstructIncomplete(SelfInstructError):
    """More requests failed than ``selfinstruct.max_failures`` allows; rerun to continue from there."""


@dataclass(frozen=True)
class PromptParts:
    """The text blocks of ``selfinstruct.prompt_file`` (see the comments in configs/selfinstruct_prompt.yaml)."""
    template: str
    layout: str
    layout_with_label: str
    label_rule: str
    example: str
    example_label: str
    category_names: dict
    no_input: str


def load_prompt(path: str | Path) -> PromptParts:
    """The prompt file's blocks; a missing file, block or placeholder is an error naming the file."""
    path = resolve(path)
    if not path.is_file():
        raise SelfInstructError(f"selfinstruct.prompt_file: {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SelfInstructError(f"{path}: not valid YAML: {e}") from None
    fields = PromptParts.__dataclass_fields__
    missing = [k for k in fields if not isinstance(raw, dict) or k not in raw]
    if missing:
        raise SelfInstructError(f"{path}: missing block(s) {missing}")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise SelfInstructError(f"{path}: unknown block(s) {unknown}; known: {sorted(fields)}")
    needs = {"template": ("{examples}", "{num_tasks}", "{layout}"), "example": ("{instruction}", "{input}", "{output}")}
    for block, marks in needs.items():
        absent = [m for m in marks if m not in raw[block]]
        if absent:
            raise SelfInstructError(f"{path}: block {block!r} lacks the placeholder(s) {absent}")
    names = {canonical_category(k) or k: v for k, v in (raw["category_names"] or {}).items()}
    if set(names) != set(CATEGORIES):
        raise SelfInstructError(f"{path}: category_names must name every use case {list(CATEGORIES)}")
    return PromptParts(**{**raw, "category_names": names, "no_input": str(raw["no_input"]).strip()})


def build_request(parts: PromptParts, examples: list[dict], num_tasks: int, label: bool) -> str:
    """The one user message of a request: the template with the numbered examples filled in."""
    blocks = []
    example = parts.example.strip()
    if label:  # the 类别 line right under the line of the instruction (not under a "###" line above it)
        lines = example.split("\n")
        at = next(i for i, line in enumerate(lines) if "{instruction}" in line) + 1
        example = "\n".join(lines[:at] + ["{category_line}"] + lines[at:])
    for n, ex in enumerate(examples, start=1):
        category = parts.example_label.format(category=parts.category_names[ex["category"]]) if label else ""
        blocks.append(example.format(number=n, instruction=ex["instruction"].strip(), category_line=category,
                                     input=ex["input"].strip() or parts.no_input, output=ex["output"].strip()))
    template = parts.template if label else parts.template.replace("{label_rule}\n", "")
    layout = (parts.layout_with_label if label else parts.layout).strip().format(no_input=parts.no_input)
    return template.format(num_examples=len(examples), num_tasks=num_tasks, examples="\n\n".join(blocks),
                           layout=layout, label_rule=parts.label_rule.strip(), no_input=parts.no_input).strip()


def request_key(cfg: StudyConfig, prompt: str, index: int) -> str:
    """sha256 of what makes a request: teacher model, sampling settings, the message and the index (sent as seed)."""
    s = cfg.selfinstruct
    parts = {"model": s.model, "temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens,
             "prompt": prompt, "index": int(index)}
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()
