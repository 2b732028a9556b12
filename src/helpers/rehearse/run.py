"""``python -m helpers rehearse --config FILE``: the config's own code path end to end on this machine's CPU,
sizes shrunk (``helpers.rehearse.shrink``), then a table per stage and the projections at the real sizes.

Order: the data stage through the runner; the first scale's training launched as its notebook launches it
(``accelerate launch`` with the config's accelerate config) and one of its processes killed once the first
checkpoint is complete; then the whole study through the runner (``python -m helpers run``, papermill, the
preflight), which must resume that scale from its checkpoint; then every published model folder loaded with
``AutoTokenizer`` and ``AutoModelForCausalLM`` in a fresh process. Evidence is read from the runner's output
and the study's files, never assumed: a check that finds it missing fails, and the command exits 1.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from helpers.study.loading import load_config, study_dir
from helpers.study.paths import REPO

GPU_GIB = 80.0
"""The card the peak memory per GPU is compared with when none is stated (``--gpu-gib``): an 80 GB A100/H100."""

GEN_TOKENS_PER_S = 1500.0
"""Generated tokens per second per GPU assumed for the generation projection (``--gen-tps``): vLLM, a 7B model in
bf16, a few hundred sequences at once. An assumption to replace with a measurement on the real card."""


@dataclass
class Row:
    """One stage of the table: what ran as configured, what was substituted, what was checked, projections."""
    stage: str
    ran: list[str] = field(default_factory=list)
    substituted: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    projected: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str, why: str = "") -> bool:
        (self.checked if ok else self.failed).append(what if ok else f"{what}: {why}")
        return ok


def _python_m(*args: str) -> list[str]:
    return [sys.executable, "-m", "helpers", *args]


def _run_logged(cmd: list[str], log: Path, env: dict, timeout: float) -> tuple[int, str]:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        done = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    return done.returncode, log.read_text(encoding="utf-8")


def _kill_after_first_checkpoint(cmd: list[str], work: Path, log: Path, env: dict, timeout: float) -> str:
    """Launch ``cmd`` (an ``accelerate launch`` of one scale), SIGKILL one training process once a checkpoint is
    complete (its ``trainer_state.json`` written), wait for the launcher to end. Returns the checkpoint's name."""
    import psutil

    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(cmd)}   (one process killed after the first checkpoint)\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        t0, killed = time.monotonic(), ""
        try:
            while time.monotonic() - t0 < timeout and proc.poll() is None:
                done = sorted(work.glob("trainer/checkpoint-*/trainer_state.json"))
                if done:
                    workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
                               if "train" in c.cmdline() and "helpers" in c.cmdline()]
                    if workers:
                        victim = workers[-1]
                        victim.send_signal(signal.SIGKILL)
                        killed = f"{done[0].parent.name} (pid {victim.pid} killed)"
                        break
                time.sleep(0.2)
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return killed


def _loads_fresh(folder: Path) -> str | None:
    """None when ``folder`` loads with AutoTokenizer and AutoModelForCausalLM in a fresh process, else why not."""
    code = ("import sys; from transformers import AutoModelForCausalLM, AutoTokenizer; p = sys.argv[1]; "
            "tok = AutoTokenizer.from_pretrained(p); m = AutoModelForCausalLM.from_pretrained(p); "
            "ids = tok('你好', return_tensors='pt').input_ids; m.generate(ids, max_new_tokens=2, do_sample=False); "
            "print(type(m).__name__)")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=300)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]


def projections(config: str | Path, root: Path, tflops: float, gpu_gib: float, gen_tps: float) -> dict[str, Row]:
    """The real sizes' figures for each stage, from the config itself (``helpers.estimate``)."""
    from helpers.estimate import checkpoint_plan, compute_plan, judge_lines, model_shape
    from helpers.finetune.launch import zero_settings
    from helpers.finetune.memory import GIB, logits_memory, model_state_memory, size
    from helpers.study.categories import CATEGORIES

    cfg = load_config(config)
    sd = study_dir(cfg, root)
    rows = {s: Row(s) for s in ("finetune", "generate", "judge")}
    t = cfg.train
    est, ck = compute_plan(cfg, sd), checkpoint_plan(cfg, sd, tflops)
    rows["finetune"].projected.append(
        f"checkpoints: {sum(ck['counts']):,} x {size(ck['bytes'])} = {size(ck['written'])} written, "
        f"{ck['write_hours']:.1f} h; {size(ck['need'])} on disk at once (this machine has {size(ck['free'])} free; "
        "the preflight checks the GPU machine's)")
    zero = zero_settings(t.accelerate_config) or {"stage": 0, "offload_optimizer": False, "offload_params": False}
    vocab, hidden = model_shape(cfg)
    trainable = est["params"] if t.method == "full" else est["params"] * 0.01 * t.lora.r / 16
    states = model_state_memory(est["params"], trainable, zero["stage"], t.num_processes, 2 if zero["stage"] or t.bf16 is True else 4,
                                zero["offload_optimizer"], zero["offload_params"], (vocab or 0) * (hidden or 0))
    logits = logits_memory(t.per_device_batch_size, t.max_length, vocab) if vocab else 0.0
    peak = states + logits
    line = (f"peak memory per GPU {size(peak)} (model states {size(states)} + logits {size(logits)}) "
            f"vs a {gpu_gib:g} GiB card; activations and the CUDA context on top")
    rows["finetune"].projected.append(line)
    if not vocab:
        rows["finetune"].failed.append("peak memory: model.vocab_size unknown, the logits are not counted")
    elif peak > gpu_gib * GIB:
        rows["finetune"].failed.append(f"peak memory per GPU {size(peak)} exceeds the {gpu_gib:g} GiB card")
    gpu_hours = est["flops"] / (tflops * 1e12) / 3600
    rows["finetune"].projected.append(f"training: {est['flops']:.2e} FLOPs = {gpu_hours:,.0f} GPU-hours at {tflops:g} "
                                      f"TFLOP/s ({gpu_hours / t.num_processes:,.1f} h on {t.num_processes} GPUs)")
    from helpers.estimate import eval_items

    _, n_items, source = eval_items(cfg, sd)
    answer = max(cfg.generate.tokens_for(c) for c in CATEGORIES)
    tokens = n_items * len(cfg.models) * answer
    rows["generate"].projected.append(f"generation: at most {tokens:,} tokens ({n_items:,} items [{source}] x "
                                      f"{len(cfg.models)} models x {answer}) = {tokens / gen_tps / 3600:.1f} GPU-hours "
                                      f"at an assumed {gen_tps:g} tokens/s per GPU")
    rows["judge"].projected += judge_lines(cfg, sd)
    return rows


def rehearse(config: str | Path, root: str | Path | None = None, tflops: float = 125.0, gpu_gib: float = GPU_GIB,
             gen_tps: float = GEN_TOKENS_PER_S, out=print, small: bool = False) -> int:
    """Rehearse ``config``; print the table; 0 when every check passed, else 1. ``small``: two scales, hf for
    vLLM (``helpers.rehearse.shrink.shrunk_config``), every other check the same."""
    from helpers.finetune.launch import launch_command, zero_settings
    from helpers.rehearse.shrink import KEY_ENV, shrunk_config
    from helpers.rehearse.standin import FINGERPRINT, StandIn
    from helpers.study.files import read_json, read_jsonl

    t0 = time.monotonic()
    real = load_config(config)
    work = Path(root) if root else Path(tempfile.mkdtemp(prefix="rehearse-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "rehearse.log"
    out(f"rehearsing {config} in {work} (log: {log})")
    env = {**os.environ, KEY_ENV: "rehearsal-key-not-secret", "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "STUDY_VERBOSE": "1"}  # the runner streams every stage's output into the rehearsal's log, read by the checks
    rows = {s: Row(s) for s in ("data", "finetune", "generate", "judge", "analysis")}
    with StandIn([real.judge.model]) as standin:
        raw, info = shrunk_config(config, work, standin.base_url if real.judge.kind == "openai" else None, small)
        for stage, subs in info["subs"].items():
            rows[stage].substituted += subs
        shrunk = work / "rehearse.yaml"
        shrunk.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
        cfg = load_config(shrunk)
        sd = study_dir(cfg, work)

        # data, through the runner
        code, text = _run_logged(_python_m("run", "--config", str(shrunk), "--root", str(work), "--only", "data"),
                                 log, env, 600)
        d = rows["data"]
        d.ran.append(f"source {cfg.data.source} via datasets.load_dataset, dedup {cfg.data.dedup.action}, contamination "
                     f"{cfg.data.contamination.action}, largest_scale {cfg.data.largest_scale}")
        if d.check(code == 0, "the data stage ran", f"exit {code}, see {log}"):
            stats = read_json(sd / "data_stats.json")
            f = stats["filters"]
            removed = (f["dedup"]["removed"], f["contamination"]["removed"])
            planted = info["planted"]
            if planted:
                d.check(removed == (planted["exact"] + planted["near"], planted["contaminated"]),
                        f"dedup removed {removed[0]}, contamination {removed[1]} (planted "
                        f"{planted['exact']}+{planted['near']}, {planted['contaminated']})", "not what was planted")
            sizes = [stats["subsets"][m]["n"] for m in cfg.models[1:]]
            d.check(sizes[:-1] == cfg.scales[:-1] and sizes[-1] <= cfg.scales[-1],
                    f"subsets of {', '.join(map(str, sizes))} records", f"scales {cfg.scales}")

        # the first scale, launched as its notebook does, killed after its first checkpoint
        ft = rows["finetune"]
        first = cfg.models[1]
        launch = launch_command(cfg, shrunk, work, first)
        ft.ran.append(f"accelerate launch --config_file {cfg.train.accelerate_config}, {cfg.train.num_processes} "
                      f"processes, method {cfg.train.method}, gradient_checkpointing {cfg.train.gradient_checkpointing}, "
                      f"save cadence {cfg.train.save_steps or f'{cfg.train.save_share:g} of a run'}"
                      + (f" and {cfg.train.save_minutes:g} min" if cfg.train.save_minutes else ""))
        if code == 0:
            killed = _kill_after_first_checkpoint(launch, sd / "models" / f".{first}.tmp", log, env, 600)
            ft.check(bool(killed), f"scale {first}: a training process killed at {killed}",
                     "no checkpoint appeared, or the launch ended first")

        # the whole study through the runner: preflight, the finetune stage resuming, generate, judge, analysis
        code, text = _run_logged(_python_m("run", "--config", str(shrunk), "--root", str(work)), log, env, 1500)
        ok = code == 0
        for row in rows.values():
            if not ok:
                row.failed.append(f"the study run exited {code}; see {log}")
        ft.check("resuming from checkpoint-" in text, f"scale {first} resumed from its checkpoint", "no resume in the log")
        zero = zero_settings(cfg.train.accelerate_config)
        if zero and zero["stage"] == 3:
            ft.check("ZeRO-3: the weights were partitioned as they loaded" in text,
                     "ZeRO-3 in force: weights partitioned as they loaded", "not in the log")
        from helpers.estimate import checkpoint_plan

        counts = checkpoint_plan(cfg, sd)["counts"]
        ft.checked.append(f"the cadence implies {' + '.join(map(str, counts))} checkpoints for these runs (the "
                          f"preflight's count); the first of scale {first} was resumed")
        for m in cfg.models[1:]:
            folder = sd / "models" / m
            why = _loads_fresh(folder) if folder.exists() else "not published"
            ft.check(why is None, f"models/{m} loads with AutoTokenizer + AutoModelForCausalLM", why or "")

        g = rows["generate"]
        g.ran.append(f"backend {cfg.generate.backend} for {', '.join(cfg.models)}")
        if cfg.generate.backend == "vllm":
            engine = next((line for line in text.splitlines() if "vllm" in line.lower() and " in " in line
                           and "generate backend" in line), "")
            g.check(bool(engine), "vLLM engine found by the preflight: " + engine.split(":", 1)[-1].strip()[:80],
                    "no preflight line for the vllm backend")
        for m in cfg.models:
            path = sd / "answers" / f"{m}.jsonl"
            n = len(read_jsonl(path)) if path.exists() else 0
            g.check(n == 12, f"answers/{m}.jsonl: {n} answers", "expected 12")

        j = rows["judge"]
        j.ran.append(f"{cfg.judge.kind} judge {cfg.judge.model} through the openai client, runs {cfg.judge.runs}, "
                     f"concurrency {cfg.judge.concurrency}")
        if cfg.judge.kind == "openai":
            rows_ = [r for m in cfg.models for r in (read_jsonl(sd / "judgments" / f"{m}.jsonl")
                                                     if (sd / "judgments" / f"{m}.jsonl").exists() else [])]
            want = 12 * len(cfg.models) * cfg.judge.runs
            j.check(len(rows_) == want, f"{len(rows_)} judgments (12 items x {len(cfg.models)} models x "
                                        f"{cfg.judge.runs} runs)", f"expected {want}")
            j.check(standin.requests <= want * (1 + cfg.judge.parse_retries),
                    f"{standin.requests} requests to the stand-in", "more than the runs allow")
            j.check(bool(rows_) and all(r.get("served_model") == cfg.judge.model and r.get("system_fingerprint")
                                        == FINGERPRINT for r in rows_),
                    "served model and system_fingerprint stored with every judgment", "missing")

        a = rows["analysis"]
        a.ran.append("05_analysis through the runner: results.csv, figures, report")
        report = work / "reports" / cfg.study / "index.html"
        a.check((sd / "results.csv").exists(), "results.csv written", "missing")
        if a.check(report.exists(), f"report {report.relative_to(work)}", "missing") and cfg.judge.kind == "openai":
            a.check(FINGERPRINT in report.read_text(encoding="utf-8"), "the report shows the judge's fingerprint",
                    "not in the report")

    for stage, row in projections(config, work, tflops, gpu_gib, gen_tps).items():
        rows[stage].projected += row.projected
        rows[stage].failed += row.failed
    print_table(list(rows.values()), out)
    failed = [f for r in rows.values() for f in r.failed]
    out(f"rehearsal of {config}: {'FAILED, ' + str(len(failed)) + ' check(s)' if failed else 'every check passed'} "
        f"in {time.monotonic() - t0:.0f} s")
    return 1 if failed else 0


def print_table(rows: list[Row], out=print) -> None:
    """One block per stage, one line per fact, prefixed by its column."""
    for r in rows:
        out(f"\n== {r.stage} " + "=" * (70 - len(r.stage)))
        for label, items in (("ran", r.ran), ("substituted", r.substituted), ("checked", r.checked),
                             ("FAILED", r.failed), ("projected", r.projected)):
            for x in items:
                out(f"  {label:<12} {x}")

