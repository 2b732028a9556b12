"""After one micro study: what reruns when something changes, and what `status` says, word for word.

The read-only checks compute the status of the session's micro study (``micro_study`` in conftest.py) without
running a stage; the ``lr`` test reruns the stages an ``lr`` change makes stale in a study of its own, and the
kill test trains the tiny model alone (both in the slow tier).
"""
import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers.analysis.report import build_index
from helpers.study import imports
from helpers.study.files import write_jsonl
from helpers.study.paths import REPO
from helpers.study.runner import run_study, status

MICRO = REPO / "configs" / "micro.yaml"
PACKAGE = REPO / "src" / "helpers"
MODULES = sorted("helpers." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
                 for p in PACKAGE.rglob("*.py"))
LABELS = ["data", "finetune-4", "finetune-12", "generate-all", "judge-base", "judge-4", "judge-12", "analysis"]


@pytest.fixture
def micro(micro_study):
    """The session's finished micro study (read only: these tests compute its status, they run nothing)."""
    return micro_study[0]


def states(root, overrides=()) -> dict[str, str]:
    """label -> what `status` prints after it ("up to date", "stale: reasons", "missing")."""
    lines = []
    status(MICRO, root=root, overrides=overrides, out=lines.append)
    return {line.split()[0]: line.split(maxsplit=1)[1].strip() for line in lines[1:]}


def edited_modules(monkeypatch, tmp_path, edits: dict[str, str]) -> None:
    """The runner sees module ``name`` as ``edits[name]`` (a copy under ``tmp_path``), the rest as they are."""
    real = imports.module_file
    copies = {}
    for name, text in edits.items():
        home = real(name)
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        for data in imports.data_files(home):  # the module's data files beside the copy, as beside the module
            (folder / data.relative_to(home.parent)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(data, folder / data.relative_to(home.parent))
        copies[name] = folder / home.name
        copies[name].parent.mkdir(parents=True, exist_ok=True)
        copies[name].write_text(text, encoding="utf-8")

    def module_file(name, package_dir=imports.PACKAGE_DIR):
        if name in copies and package_dir == imports.PACKAGE_DIR:
            return copies[name]
        return real(name, package_dir)

    monkeypatch.setattr(imports, "module_file", module_file)


def _insert_after_quotes(lines: list[str], node: ast.Expr, words: str) -> None:
    line = lines[node.lineno - 1]
    col = node.col_offset
    while line[col] not in "'\"":  # a prefix such as r
        col += 1
    quotes = line[col:col + 3] if line[col:col + 3] in ('"""', "'''") else line[col]
    lines[node.lineno - 1] = line[:col + len(quotes)] + words + line[col + len(quotes):]


def prose_edit(source: str) -> str:
    """``source`` with its module docstring and first function or class docstring reworded, and a comment added
    (a module without a docstring gets one)."""
    tree = ast.parse(source)
    owners = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef)))]
    owners = [n for n in owners if ast.get_docstring(n, clean=False) is not None][:2]
    if not owners:
        return '"""An added docstring."""\n' + source + "\n# and a comment\n"
    lines = source.splitlines(keepends=True)
    for node in sorted((n.body[0] for n in owners), key=lambda n: (n.lineno, n.col_offset), reverse=True):
        _insert_after_quotes(lines, node, "Reworded: ")
    edited = "".join(lines)
    new = ast.parse(edited)
    assert ast.get_docstring(owners[0], clean=False) != ast.get_docstring(
        next(n for n in [new, *ast.walk(new)] if type(n) is type(owners[0]) and getattr(n, "name", None) == getattr(
            owners[0], "name", None)), clean=False)
    return edited + "\n# and a comment\n"


def test_a_study_moved_elsewhere_stays_up_to_date_and_reads_older_records(micro_copy):
    """Moving a study (scratch to home, another checkout) must not make its trained models stale; records written
    by older runners (outputs named by absolute path) still count."""
    assert states(micro_copy) == dict.fromkeys(LABELS, "up to date")
    sd = micro_copy / "data" / "micro"
    lines = []
    run_study(MICRO, root=micro_copy, out=lines.append)
    assert [line for line in lines if line.startswith("[run")] == []
    record = sd / ".stages" / "finetune-4.json"
    saved = json.loads(record.read_text())
    assert set(saved["outputs"]) == {"models/4"}
    saved["outputs"] = {str(sd / name): h for name, h in saved["outputs"].items()}
    record.write_text(json.dumps(saved))
    assert states(micro_copy)["finetune-4"] == "up to date"
    saved["outputs"] = {str(sd / "models" / "4"): "0" * 64}
    record.write_text(json.dumps(saved))
    assert states(micro_copy)["finetune-4"] == "stale: output: models/4 changed"


def test_a_micro_study_is_up_to_date_and_status_says_so(micro):
    assert states(micro) == dict.fromkeys(LABELS, "up to date")
    out = subprocess.run([sys.executable, "-m", "helpers", "status", "--config", str(MICRO), "--root", str(micro)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"study micro ({micro / 'data' / 'micro'}): 8 up to date, 0 stale, 0 missing"


def test_a_docstring_edit_in_any_module_leaves_every_stage_up_to_date(micro, monkeypatch, tmp_path):
    for name in MODULES:
        source = imports.module_file(name).read_text(encoding="utf-8")
        edited = prose_edit(source)
        assert edited != source
        edited_modules(monkeypatch, tmp_path, {name: edited})
        assert states(micro) == dict.fromkeys(LABELS, "up to date"), name
    # the same kind of copy with a change to the code makes the stages that run it stale, and says which file
    edited_modules(monkeypatch, tmp_path, {"helpers.judge.text_metrics": prose_edit(
        imports.module_file("helpers.judge.text_metrics").read_text()) + "CHANGED = 1\n"})
    judged = {f"judge-{m}": "stale: code: helpers/judge/text_metrics.py" for m in ("base", "4", "12")}
    assert states(micro) == {**dict.fromkeys(LABELS, "up to date"), **judged, "analysis": (
        "stale: input: judgments/base.jsonl (judge-base is stale); input: judgments/4.jsonl (judge-4 is stale); "
        "input: judgments/12.jsonl (judge-12 is stale)")}


def reword(source: str) -> str:
    """``source`` with the first string a function returns or formats reworded (a finding's wording)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.IfExp) and isinstance(node.value.body, ast.Constant):
            c = node.value.body
            lines = source.splitlines(keepends=True)
            line = lines[c.lineno - 1]
            lines[c.lineno - 1] = line[:c.col_offset] + repr(c.value + " (reworded)") + line[c.end_col_offset:]
            return "".join(lines)
    raise AssertionError("no string to reword")


def test_a_change_to_the_findings_wording_makes_only_analysis_stale(micro, monkeypatch, tmp_path):
    source = imports.module_file("helpers.analysis.findings").read_text(encoding="utf-8")
    edited_modules(monkeypatch, tmp_path, {"helpers.analysis.findings": reword(source)})
    assert states(micro) == {**dict.fromkeys(LABELS, "up to date"),
                             "analysis": "stale: code: helpers/analysis/findings.py"}


def test_a_save_steps_change_or_other_plumbing_makes_nothing_stale(micro):
    assert states(micro, ("train.save_steps=7", "generate.batch_size=5")) == dict.fromkeys(LABELS, "up to date")
    assert states(micro, ("train.per_device_batch_size=2",)) == dict.fromkeys(LABELS, "up to date")


LR_STALE = {
    "data": "up to date",
    "finetune-4": "stale: train.lr 0.0003 -> 0.001",
    "finetune-12": "stale: train.lr 0.0003 -> 0.001",
    "generate-all": "stale: input: models/4 (finetune-4 is stale); input: models/12 (finetune-12 is stale)",
    "judge-base": "stale: input: answers/base.jsonl (generate-all is stale)",
    "judge-4": "stale: input: answers/4.jsonl (generate-all is stale)",
    "judge-12": "stale: input: answers/12.jsonl (generate-all is stale)",
    "analysis": "stale: input: answers/base.jsonl (generate-all is stale); input: answers/4.jsonl (generate-all is stale); "
                "input: answers/12.jsonl (generate-all is stale); input: judgments/base.jsonl (judge-base is stale); "
                "input: judgments/4.jsonl (judge-4 is stale); input: judgments/12.jsonl (judge-12 is stale); "
                "input: models/4/train_log.jsonl (finetune-4 is stale); input: models/12/train_log.jsonl (finetune-12 is stale)",
}


@pytest.mark.slow
def test_an_lr_change_reruns_finetune_and_after_and_keeps_the_old_models_aside(micro_copy):
    micro = micro_copy
    lr = ("train.lr=1e-3",)
    assert states(micro, lr) == LR_STALE
    plan_lines = []
    run_study(MICRO, root=micro, overrides=lr, dry_run=True, out=plan_lines.append)
    assert "  finetune-4               will run (stale: train.lr 0.0003 -> 0.001)" in plan_lines
    assert "  generate-all             will run (stale: input: models/4 (finetune-4 is stale); " \
           "input: models/12 (finetune-12 is stale))" in plan_lines

    models = micro / "data" / "micro" / "models"
    old = {s: (models / s / "adapter_model.safetensors").read_bytes() for s in ("4", "12")}
    base_answers = (micro / "data" / "micro" / "answers" / "base.jsonl").read_bytes()
    lines = []
    run_study(MICRO, root=micro, overrides=lr, out=lines.append, report=build_index)
    assert [line.split()[1] for line in lines if line.startswith("[done]")] == [
        "finetune-4", "finetune-12", "generate-all", "judge-4", "judge-12", "analysis"]  # the base model's judge: not
    # (the one generate execution answered the retrained models only: the base model's answers are the same file)
    assert (micro / "data" / "micro" / "answers" / "base.jsonl").read_bytes() == base_answers
    for scale in ("4", "12"):
        aside, = models.glob(f"{scale}.stale-*")
        assert (aside / "adapter_model.safetensors").read_bytes() == old[scale]  # the old model, whole
        assert (models / scale / "adapter_model.safetensors").read_bytes() != old[scale]
        executed = (micro / "data" / "micro" / "notebooks" / f"finetune-{scale}.ipynb").read_text()
        assert f"moved aside: {scale} (train.lr 0.0003 -> 0.001) -> {aside}" in executed
    assert states(micro, lr) == dict.fromkeys(LABELS, "up to date")
    back = states(micro)
    assert back["finetune-4"] == "stale: train.lr 0.001 -> 0.0003" and back["generate-all"].startswith("stale: input: models/4")
    footer = (micro / "reports" / "micro" / "index.html").read_text()
    assert "<footer>Produced by code " in footer and "settings that change results" in footer


def parses(path: Path) -> bool:
    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


@pytest.mark.slow
def test_killed_mid_training_then_save_steps_changed_resumes_and_another_lr_keeps_the_checkpoints(tmp_path, tiny_model_dir):
    records = [{"id": f"t{i}", "instruction": f"把数字{i}加一", "input": "", "output": f"答案：{i + 1}", "category": "math"}
               for i in range(24)]
    raw = {"study": "kill", "seed": 0, "scales": [24], "data": {"pool_size": 40, "eval_per_category": 1},
           "model": {"base": str(tiny_model_dir)},
           "train": {"batch_size": 2, "per_device_batch_size": 2, "max_length": 32, "bf16": False, "save_steps": 2}}
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump(raw))

    def train(root, *overrides, kill=False):
        cmd = [sys.executable, "-m", "helpers", "train", "--config", str(config), "--scale", "24", "--root", str(root)]
        cmd += [a for o in overrides for a in ("--set", o)]
        if not kill:
            done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-2000:]
            return done.stdout
        work = root / "data" / "kill" / "models" / ".24.tmp" / "trainer"
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        # a complete checkpoint: its trainer_state.json (written last) parses; one still being written does not,
        # and the rerun would rightly pass it over and start again
        while not any(parses(f) for f in work.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline:
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return ""

    for root in ("resumed", "restarted"):
        write_jsonl(tmp_path / root / "data" / "kill" / "subsets" / "24.jsonl", records)
        train(tmp_path / root, kill=True)
    out = train(tmp_path / "resumed", "train.save_steps=5")
    assert "resuming from checkpoint-" in out and "moved aside" not in out

    models = tmp_path / "restarted" / "data" / "kill" / "models"
    out = train(tmp_path / "restarted", "train.lr=1e-3")
    aside, = models.glob("24.checkpoints.stale-*")
    assert "resuming" not in out and f"moved aside: .24.tmp (train.lr 0.0003 -> 0.001) -> {aside}" in out
    assert list((aside / "trainer").glob("checkpoint-*/trainer_state.json"))  # the checkpoints, kept

    out = train(tmp_path / "restarted")  # back to the first lr: the finished model of 1e-3 goes aside too
    model_aside, = models.glob("24.stale-*")
    assert f"moved aside: 24 (train.lr 0.001 -> 0.0003) -> {model_aside}" in out
    assert (model_aside / "adapter_model.safetensors").exists() and (models / "24" / "adapter_model.safetensors").exists()
    assert Path(models / "24").is_dir()
