"""The data stage at the paper's size: 2,000,000 BELLE-layout records, every step timed, in one run.

Data: ``--records`` lines of ``{instruction, input, output}`` (BELLE's ``train_2M_CN`` layout), in
Chinese: a task of the built-in suite (``helpers.data.suite``) behind a generated context sentence
(a person, a city, a job, an event), a third of them with an ``input``, and answers drawn to a
long-tailed length (log-normal, median about 180 characters, a few over 2,000) as BELLE's are.
Then 4% of the records are replaced by edited copies of a record up to 5,000 lines earlier and 1%
by copies that differ only in whitespace, width or case (``benchmarks/dedup.py``'s edits), and a
few questions of the eval set are planted: half verbatim as an instruction, half inside a longer
instruction. All planted records are known by line.

Steps, each with wall time and peak memory (RSS of this process plus the unique memory of its
worker processes, sampled every 0.1 s), through the data stage's own functions with the default ``data`` settings:

1. load and validate: ``helpers.data.stage.load_sources`` (``loaders.load_train``/``load_eval``);
2. verbatim check: ``helpers.study.dedup.verbatim_hits`` (``contamination.verbatim: remove``);
3. de-duplication: ``helpers.study.dedup.dedup_records`` (exact, then MinHash LSH);
4. contamination: ``helpers.study.dedup.find_contamination``;
5. nested subsets: ``helpers.data.selection.selection_order`` (random), written as
   ``subsets/<scale>.jsonl`` at 10%, 30%, 50% and 100% of the cleaned pool (0.2M/0.6M/1M/2M of 2M);
6. tokenization cache: ``helpers.finetune.cache.subset_rows`` for the largest scale (built once,
   ``datasets.map`` with worker processes), then every scale from the cache, with the embedded
   model's tokenizer and ``train.max_length`` 1,024 (the paper's).

Baseline (step 6): the list path it replaces (``list_path``: one tokenizer call per prompt and per
answer into Python lists, run by every process for every scale), timed on a sample and projected to
the records of all four scales for one process; ``ratio`` = that time / the cache's (build plus
every scale's load). With P training processes the list path costs P times that again. Also the share of the planted duplicates and
eval questions found. Ends with one JSON line. Goal on 2 cores: at most 15 minutes and 12 GiB for
the steps in all.

    python benchmarks/data_scale.py [--records 2000000] [--out data/bench_data_scale] [--keep]
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dedup import context, exact_copy, near_copy  # noqa: E402  (the edits of the de-duplication benchmark)

from helpers.data.selection import selection_order  # noqa: E402
from helpers.data.stage import load_sources  # noqa: E402
from helpers.data.suite import build_suite, generate  # noqa: E402
from helpers.finetune.cache import row_lengths, subset_rows  # noqa: E402
from helpers.finetune.tokens import tokenize  # noqa: E402
from helpers.study.categories import CATEGORIES  # noqa: E402
from helpers.study.config import StudyConfig  # noqa: E402
from helpers.study.dedup import dedup_records, find_contamination, ngrams, verbatim_hits  # noqa: E402
from helpers.study.files import dumps, write_jsonl  # noqa: E402
from helpers.study.models import base_model_path, load_tokenizer  # noqa: E402
from helpers.study.paths import REPO  # noqa: E402
from helpers.study.prompt import question  # noqa: E402

FILLER = ["首先，我们需要明确问题的关键所在。", "其次，可以从几个方面进行分析。", "这样做的好处是效率更高，也更容易理解。",
          "需要注意的是，具体情况还要具体分析。", "总的来说，这个方法简单实用。", "例如，在日常生活中我们经常会遇到类似的情况。",
          "此外，还应该考虑时间和成本的因素。", "如果条件允许，可以多尝试几种不同的方案。", "最后，希望以上内容对你有所帮助。",
          "从长远来看，坚持下去一定会有收获。", "另外，与他人多交流也能得到新的启发。", "因此，我们应当保持耐心，循序渐进。"]

SCALE_SHARES = (0.1, 0.3, 0.5, 1.0)
"""The paper's 0.2M, 0.6M, 1M and 2M as shares of the cleaned pool."""


class Meter:
    """Wall time and peak RSS (this process plus its children) of each step, printed as it ends."""

    def __init__(self):
        self.steps: dict[str, dict] = {}
        self.proc = psutil.Process()

    def rss(self) -> int:
        """This process's RSS plus its workers' unique memory (USS): ``datasets`` forks its workers, whose
        RSS would count again every page they share with this process."""
        total = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True):
            try:
                total += child.memory_full_info().uss
            except psutil.Error:
                pass
        return total

    def run(self, name: str, fn, *args, **kw):
        peak, done = [self.rss()], threading.Event()

        def sample():
            while not done.wait(0.1):
                peak[0] = max(peak[0], self.rss())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        t0 = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            seconds = time.perf_counter() - t0
            done.set()
            thread.join()
            peak[0] = max(peak[0], self.rss())
            self.steps[name] = {"seconds": round(seconds, 1), "peak_rss_gib": round(peak[0] / 2**30, 2)}
            print(f"{name}: {seconds:,.1f} s, peak RSS {peak[0] / 2**30:.2f} GiB", flush=True)


def answer(base: str, rng: random.Random) -> str:
    """The suite's answer, lengthened to a log-normal number of characters (median ~180, long tail)."""
    target = min(4000, int(rng.lognormvariate(math.log(180), 0.9)))
    parts, size = [base], len(base)
    while size < target:
        s = rng.choice(FILLER)
        parts.append(s)
        size += len(s)
    return "".join(parts)


def make_records(n: int, eval_items: list[dict], seed: int) -> tuple[list[dict], list[tuple[int, int, str]], dict]:
    """(records, planted duplicates ``(line, source line, kind)``, planted eval questions ``{line: eval index}``)."""
    rng = random.Random(seed)
    base = [r for c in CATEGORIES for r in generate(c, max(1, min(3000, n // 100)), seed=seed)]
    rng.shuffle(base)
    records = []
    for i in range(n):
        b = base[i % len(base)] if i < len(base) else rng.choice(base)
        instruction, inp = question(b["instruction"], b["input"]), ""
        if rng.random() < 0.33 and "\n" not in instruction:
            inp = f"{context(rng)}（编号{i}）"
        else:
            instruction = f"{context(rng)}{instruction}"
        records.append({"instruction": instruction, "input": inp, "output": answer(b["output"], rng)})
    dups = []
    for i in range(1, n):
        u = rng.random()
        if u < 0.05:
            src = rng.randrange(max(0, i - 5000), i)
            kind = "near" if u < 0.04 else "exact"
            edit = near_copy if kind == "near" else exact_copy
            records[i] = {**records[src], "instruction": edit(records[src]["instruction"], rng)}
            dups.append((i, src, kind))
    involved = {i for i, _, _ in dups} | {s for _, s, _ in dups}
    free = [i for i in range(n) if i not in involved]
    lines = rng.sample(free, min(len(free), len(eval_items), max(2, min(20, n // 100))))
    planted = {}
    for k, line in enumerate(lines):
        e = eval_items[k]
        if k % 2 == 0:  # verbatim: the eval question is the instruction
            records[line] = {"instruction": e["question"], "input": "", "output": answer(e["reference"] or "好的。", rng)}
        else:  # inside a longer instruction
            records[line] = {"instruction": f"{context(rng)}请回答下面的问题：{e['question']}", "input": "",
                             "output": answer(e["reference"] or "好的。", rng)}
        planted[line] = k
    return records, dups, planted


def list_path(records: list[dict], tok, max_length: int) -> list[dict]:
    """The baseline: the fine-tuning stage's tokenization before the cache, which every process ran
    for every scale (one tokenizer call per prompt and per answer, rows as Python lists)."""
    from helpers.finetune.tokens import IGNORE
    from helpers.study.prompt import format_prompt

    rows = []
    for r in records:
        prompt = tok(format_prompt(r["instruction"], r.get("input", "")))["input_ids"]
        answer = tok(r["output"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = (prompt + answer)[:max_length]
        labels = ([IGNORE] * len(prompt) + answer)[:max_length]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return rows


def write_data(out: Path, n: int, seed: int) -> tuple[Path, Path, list, dict]:
    _, eval_items = build_suite(seed, 0, 10)
    records, dups, planted = make_records(n, eval_items, seed)
    out.mkdir(parents=True, exist_ok=True)
    train = out / "train_belle.jsonl"
    with open(train, "w", encoding="utf-8") as f:
        for lo in range(0, n, 100_000):
            f.write("".join(dumps(r) + "\n" for r in records[lo: lo + 100_000]))
    evalf = out / "eval.jsonl"
    write_jsonl(evalf, eval_items)
    return train, evalf, dups, planted


def line_of(record_id: str) -> int:
    """Records of a file without ids are numbered by line: ``pool-0001234`` is line 1234 (from 0)."""
    return int(record_id.rsplit("-", 1)[1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--out", type=Path, default=REPO / "data" / "bench_data_scale")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--sample", type=int, default=20_000, help="records the list-path baseline is timed on")
    ap.add_argument("--num-proc", type=int, default=None, help="tokenizing processes (default: by size and cores)")
    ap.add_argument("--keep", action="store_true", help="keep the written files (removed at the end by default)")
    args = ap.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    m = Meter()

    train, evalf, dups, planted = m.run("write file", write_data, args.out, args.records, args.seed)
    mb = train.stat().st_size / 2**20
    print(f"data: {args.records:,} records ({mb:,.0f} MiB), {len(dups):,} planted duplicates, "
          f"{len(planted)} planted eval questions", flush=True)
    data = {"source": "file", "train_files": [str(train)], "eval_file": str(evalf),
            "contamination": {"verbatim": "remove"}}
    cfg = StudyConfig.model_validate({"study": "bench", "seed": args.seed, "scales": [1], "data": data})
    cc, dc = cfg.data.contamination, cfg.data.dedup

    pool, items, _ = m.run("load and validate", load_sources, cfg)
    questions = [it["question"] for it in items]

    def pool_question(r):
        return question(r["instruction"], r.get("input", ""))

    def verbatim(pool):
        hits = verbatim_hits([pool_question(r) for r in pool], questions)
        drop = {p for _, p in hits}
        return [r for i, r in enumerate(pool) if i not in drop], {line_of(pool[p]["id"]) for p in drop}

    pool, verbatim_lines = m.run("verbatim check", verbatim, pool)

    def dedup(pool):
        keep, notes, counts = dedup_records(pool, pool_question, dc.threshold, dc.ngram, dc.num_perm)
        return [r for r, k in zip(pool, keep) if k], {line_of(n["id"]) for n in notes}, counts

    pool, dup_lines, counts = m.run("de-duplication", dedup, pool)

    def contamination(pool):
        texts = [f"{pool_question(r)}\n{r['output']}" for r in pool]
        found, _ = find_contamination(texts, questions, cc.n, cc.threshold, cc.max_df)
        drop = {f["pool"] for f in found}
        return [r for i, r in enumerate(pool) if i not in drop], {line_of(pool[p]["id"]) for p in drop}

    pool, contaminated_lines = m.run("contamination", contamination, pool)
    scales = sorted({max(1, int(len(pool) * s)) for s in SCALE_SHARES})
    cfg = StudyConfig.model_validate({"study": "bench", "seed": args.seed, "scales": scales, "data": data,
                                      "train": {"max_length": args.max_length}})
    sd = args.out / "study"

    def subsets(pool):
        order, _, _ = selection_order(pool, cfg.strategy, cfg.seed)
        for s in scales:
            write_jsonl(sd / "subsets" / f"{s}.jsonl", (pool[i] for i in order[:s]))
        return order

    m.run("nested subsets", subsets, pool)
    del pool
    tok = load_tokenizer(base_model_path(cfg))

    def cache_all():
        rows, _ = subset_rows(cfg, sd, str(scales[-1]), tok, args.num_proc)
        sizes = {}
        for s in scales:  # every scale (what each training process does) reads the cache
            sub, _ = subset_rows(cfg, sd, str(s), tok)
            sizes[s] = (len(sub), sum(row_lengths(sub)))
        return sizes

    sizes = m.run("tokenization cache", cache_all)

    def baseline():
        with open(sd / "subsets" / f"{scales[-1]}.jsonl", encoding="utf-8") as f:
            sample = [json.loads(line) for _, line in zip(range(args.sample), f)]
        t0 = time.perf_counter()
        rows = list_path(sample, tok, args.max_length)
        seconds = time.perf_counter() - t0
        assert rows == tokenize(sample, tok, args.max_length)  # the cache's rows come from tokenize
        return seconds / len(sample), sum(len(r["input_ids"]) for r in rows) / len(rows)

    per_record, mean_tokens = m.run("baseline sample", baseline)
    list_path_s = per_record * sum(scales)
    cache_s = m.steps["tokenization cache"]["seconds"]

    # what was found of what was planted
    planted_lines = set(planted)
    found_eval = len(planted_lines & (verbatim_lines | contaminated_lines))
    thr = dc.threshold
    kinds = {"near": [0, 0, 0, 0], "exact": [0, 0, 0, 0]}
    records = None
    for line, src, kind in dups:
        k = kinds[kind]
        k[0] += 1
        k[1] += line in dup_lines
    with open(train, encoding="utf-8") as f:  # Jaccard of each planted pair, for the share at the threshold
        wanted = {i for i, _, _ in dups} | {s for _, s, _ in dups}
        records = {i: json.loads(x)["instruction"] for i, x in enumerate(f) if i in wanted}
    for line, src, kind in dups:
        if src not in dup_lines and src not in verbatim_lines:
            a, b = ngrams(records[line], dc.ngram), ngrams(records[src], dc.ngram)
            if len(a & b) / len(a | b) >= thr:
                kinds[kind][2] += 1
                kinds[kind][3] += line in dup_lines
    step_s = sum(v["seconds"] for k, v in m.steps.items() if k not in ("write file", "baseline sample"))
    peak = max(v["peak_rss_gib"] for k, v in m.steps.items() if k != "baseline sample")
    planted_dups = kinds["near"][0] + kinds["exact"][0]
    found_dups = kinds["near"][1] + kinds["exact"][1]
    print(f"de-duplication: {counts['exact']:,} exact and {counts['near']:,} near duplicates removed; planted found "
          f"{found_dups:,}/{planted_dups:,} ({found_dups / max(1, planted_dups):.1%}); of the planted pairs at "
          f"Jaccard >= {thr}: near {kinds['near'][3]:,}/{kinds['near'][2]:,}, "
          f"exact {kinds['exact'][3]:,}/{kinds['exact'][2]:,}")
    print(f"contamination: planted eval questions found {found_eval}/{len(planted)} "
          f"(verbatim {len(verbatim_lines)}, n-gram overlap {len(contaminated_lines)} pool items removed in all)")
    print(f"tokenization: scales {', '.join(f'{s:,}' for s in scales)}; cache built and read by every scale in "
          f"{cache_s:,.0f} s; the list path per scale would take {list_path_s:,.0f} s per process "
          f"({per_record * 1e6:.0f} us/record on {args.sample:,}, mean {mean_tokens:.0f} tokens): "
          f"{list_path_s / max(cache_s, 1e-9):.1f}x")
    print(f"data stage steps: {step_s:,.0f} s, peak RSS {peak:.2f} GiB (goal: 900 s, 12 GiB on 2 cores)")
    result = {
        "benchmark": "data_scale", "records": args.records, "file_mib": round(mb), "steps": m.steps,
        "total_seconds": round(step_s, 1), "peak_rss_gib": peak,
        "planted_duplicates": planted_dups, "duplicates_found": found_dups,
        "duplicate_share_found": round(found_dups / max(1, planted_dups), 4),
        "near_at_threshold_found": round(kinds["near"][3] / max(1, kinds["near"][2]), 4),
        "exact_found": round(kinds["exact"][1] / max(1, kinds["exact"][0]), 4),
        "removed_exact": counts["exact"], "removed_near": counts["near"],
        "planted_eval": len(planted), "eval_found": found_eval,
        "contamination_share_found": round(found_eval / max(1, len(planted)), 4),
        "scales": scales, "scale_tokens": {str(s): t for s, (_, t) in sizes.items()},
        "list_path_projected_s": round(list_path_s, 1), "cache_s": cache_s,
        "ratio": round(list_path_s / max(cache_s, 1e-9), 2),
        "goal_met": bool(step_s <= 900 and peak <= 12),
    }
    print(json.dumps(result))
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
