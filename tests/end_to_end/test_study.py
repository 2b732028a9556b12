"""The micro study end to end through papermill, on the real embedded model (the session's ``micro_study``)."""
import time
from pathlib import Path

from helpers.analysis.report import build_index
from helpers.study.categories import CATEGORIES
from helpers.study.files import read_json, read_jsonl
from helpers.study.loading import load_config
from helpers.study.paths import REPO
from helpers.study.runner import run_study


def test_every_stage_ran_and_the_report_exists(micro_study):
    root, index, lines = micro_study
    cfg = load_config("configs/micro.yaml")
    sd = root / "data" / "micro"
    assert index == root / "reports" / "micro" / "index.html" and index.exists()
    ran = [line.split()[1] for line in lines if line.startswith("[done]")]
    assert ran == ["data", "finetune-4", "finetune-12", "generate-all", "judge-base", "judge-4", "judge-12", "analysis"]
    for label in ran:
        assert (sd / "notebooks" / f"{label}.ipynb").exists()
        assert (root / "reports" / "micro" / "notebooks" / f"{label}.html").exists()
    html = index.read_text()
    assert "notebooks/finetune-12.html" in html and "results.csv" in html
    times = read_json(sd / "manifest.json")["stages"]
    assert set(times) == set(ran) and all(v["seconds"] > 0 for v in times.values())
    from helpers.judge.sandbox import isolation
    code_runs = read_json(sd / "manifest.json")["code_execution"]
    assert code_runs["modes"] == {isolation() or "not run": 3 * cfg.data.eval_per_category}
    assert ("Code answers ran in OS isolation" if isolation() else "Code answers were NOT run") in html
    assert len(cfg.models) == 3


def test_stage_outputs_have_their_schemas(micro_study):
    root, _, _ = micro_study
    sd = root / "data" / "micro"
    items = read_jsonl(sd / "eval.jsonl")
    ids = {it["id"] for it in items}
    assert {it["category"] for it in items} == set(CATEGORIES)
    for scale in ("4", "12"):
        assert (sd / "models" / scale / "adapter_model.safetensors").exists()
        log = read_jsonl(sd / "models" / scale / "train_log.jsonl")
        assert log and all({"step", "loss", "tokens_seen", "tokens_per_s", "wall_s"} <= set(r) for r in log)
    for model in ("base", "4", "12"):
        answers = read_jsonl(sd / "answers" / f"{model}.jsonl")
        assert {a["id"] for a in answers} == ids and all(isinstance(a["answer"], str) for a in answers)
        judged = read_jsonl(sd / "judgments" / f"{model}.jsonl")
        assert {j["id"] for j in judged} == ids
        assert all(j["score"] is None or 0 <= j["score"] <= 1 for j in judged)
    results = read_json(sd / "results.json")
    table = {(r["category"], r["model"]) for r in results["table"]}
    assert {(c, m) for c in CATEGORIES for m in ("base", "4", "12")} <= table
    assert (sd / "results.csv").read_text().startswith("category,model,examples,mean")


def test_a_second_run_skips_everything_in_seconds(micro_copy):
    root = micro_copy
    lines = []
    t0 = time.perf_counter()
    run_study(REPO / "configs" / "micro.yaml", root=root, out=lines.append, report=build_index)
    assert time.perf_counter() - t0 < 30
    assert [line for line in lines if line.startswith("[run ]")] == []
    assert sum(line.startswith("[skip]") for line in lines) == 8


def test_only_reruns_one_stage_when_forced(micro_copy):
    root = micro_copy
    lines = []
    run_study(REPO / "configs" / "micro.yaml", root=root, only="judge", force=True, out=lines.append, report=build_index)
    assert [line.split()[1] for line in lines if line.startswith("[done]")] == ["judge-base", "judge-4", "judge-12"]


def test_the_report_renders_in_headless_chromium(micro_study):
    """No console errors, every link resolves to a file, every image decodes."""
    from urllib.parse import unquote, urlparse

    from playwright.sync_api import sync_playwright

    _, index, _ = micro_study
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.on("console", lambda m: m.type in ("error", "warning") and problems.append(f"console {m.type}: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(index.as_uri())
        images = page.evaluate("() => [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
        links = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
        text = page.inner_text("body")
        browser.close()
    assert problems == []
    assert len(images) >= 4 and all(ok for _, ok in images), images
    local = [unquote(urlparse(href).path) for href in links if href.startswith("file:")]
    assert len(local) >= 10 and all(Path(path).is_file() for path in local), local
    assert "Overall" in text and "offline" in text


CHROMIUM = "/usr/bin/chromium"
