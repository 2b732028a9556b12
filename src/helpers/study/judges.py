"""The study's judges: the headline judge and the others of ``judge.others``, with their names and files.

Shared by the judge stage (which writes the files), the runner (which plans them as outputs and inputs) and
the analysis (which reads them), so the paths are spelled once. The headline judge keeps the paths a study
with a single judge has always had (``judgments/<model>.jsonl``, ``judge_cache/<model>.jsonl``), so nothing
that reads them changes; each other judge gets a folder of its own under both, named by its key.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from helpers.study.config import JudgeSettings, StudyConfig


@dataclass(frozen=True)
class Judge:
    """One judge of the study: its ``name`` (``offline`` or the model for the headline judge, the key of
    ``judge.others`` for the others), its settings, and ``section``, the config key error messages name."""
    name: str
    settings: JudgeSettings
    section: str
    headline: bool

    def judgments(self, study_dir: Path, model: str) -> Path:
        """Where this judge's judgments of ``model``'s answers go."""
        return judgments_path(study_dir, model, None if self.headline else self.name)

    def cache_dir(self, study_dir: Path) -> Path:
        """The folder of this judge's LLM reply cache (one file per judge model inside)."""
        base = Path(study_dir) / "judge_cache"
        return base if self.headline else base / self.name


def study_judges(cfg: StudyConfig) -> list[Judge]:
    """Every judge of the study, the headline judge first, then ``judge.others`` in config order."""
    head = Judge(cfg.judge.name, cfg.judge, "judge", True)
    return [head] + [Judge(n, s, f"judge.others.{n}", False) for n, s in cfg.judge.others.items()]


def judgments_path(study_dir: Path, model: str, judge: str | None = None) -> Path:
    """``judgments/<model>.jsonl`` for the headline judge (``judge`` None), ``judgments/<judge>/<model>.jsonl``
    for another."""
    folder = Path(study_dir) / "judgments"
    return (folder if judge is None else folder / judge) / f"{model}.jsonl"
