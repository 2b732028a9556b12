"""Stage 01: the instruction pool, the eval set and the nested training subsets.

``prepare`` runs, in this order, and prints and records (``data_stats.json``) what each step
removed and why; every removed pool item is listed in ``removed.jsonl`` with its reason:

1. load the pool and the eval set (the built-in suite, or files / Hugging Face datasets through
   ``helpers.loaders``, which map messy category labels and refuse bad records, or ``generated.jsonl``
   of the self-instruct stage with ``data.source: generate``);
2. verbatim check: an eval question found verbatim (normalised) in the pool stops the study
   (``data.contamination.verbatim: error``, the default) or removes that pool item;
3. de-duplication of the pool: exact, then near duplicates by MinHash LSH (``helpers.dedup``);
4. contamination: pool items containing most of an eval question's distinctive character
   n-grams are removed;
5. selection: the study's ``strategy`` (``helpers.selection``) orders the remaining pool; the
   subset of each scale is a prefix of that order, so every smaller scale is contained in every
   larger one (the paper's nested 0.2M ⊂ 0.6M ⊂ 1M ⊂ 2M) and the same seed gives the same files.
   With a list of strategies (the grid) each gets its own nested subsets, ``subsets/<strategy>-<scale>.jsonl``,
   drawn from the same de-duplicated pool; the ``quality`` filters then only narrow the quality subsets.

Steps 3 and 4 have ``action: auto``: they remove for file/hf sources and only report for the
built-in suite, whose pool and eval split are disjoint by construction (and whose templated
items resemble each other by design); the default study's files are therefore unchanged.
"""
from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from helpers import CATEGORIES
from helpers.config import StudyConfig, resolve, split_model
from helpers.files import write_json, write_jsonl
from helpers.prompt import question

TRAIN_FIELDS = ("instruction", "input", "output")


def load_sources(cfg: StudyConfig, study_dir: Path | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    """(pool, eval items, source summaries) from the configured source.

    ``generate``: the pool is ``<study_dir>/generated.jsonl`` of the self-instruct stage, read (and
    checked) like any train file; the eval set is ``data.eval_file`` if given, else the built-in
    suite's held-out eval split (``data.eval_per_category`` per use case).
    """
    if cfg.data.source == "generate":
        from helpers.loaders import load_eval, load_train
        from helpers.tasks import build_suite

        generated = Path(study_dir or "") / "generated.jsonl"
        if study_dir is None or not generated.is_file():
            raise ValueError(f"data.source generate: {generated} not found: run the selfinstruct stage first "
                             f"(python -m helpers run --config ... --only selfinstruct)")
        pool, summary = load_train(str(generated), category_map=cfg.data.category_map)
        if cfg.data.eval_file:
            items, eval_summary = load_eval(resolve(cfg.data.eval_file), category_map=cfg.data.category_map)
        else:
            _, items = build_suite(cfg.seed, 0, cfg.data.eval_per_category)
            eval_summary = {"file": "builtin suite", "kind": "eval", "records": len(items)}
        return pool, items, [summary, eval_summary]
    if cfg.data.source == "builtin":
        from helpers.tasks import build_suite

        pool, items = build_suite(cfg.seed, cfg.data.pool_size, cfg.data.eval_per_category)
        return pool, items, [{"file": "builtin suite", "kind": "train", "records": len(pool)},
                             {"file": "builtin suite", "kind": "eval", "records": len(items)}]
    from helpers.loaders import load_eval, load_train

    if not cfg.data.eval_file:
        raise ValueError("data.eval_file: required when data.source is not builtin")
    pool, summaries, seen_ids = [], [], {}
    for spec in cfg.data.train_files:
        records, summary = load_train(spec, category_map=cfg.data.category_map, start=len(pool), seen_ids=seen_ids)
        pool.extend(records)
        summaries.append(summary)
    items, summary = load_eval(resolve(cfg.data.eval_file), category_map=cfg.data.category_map)
    return pool, items, summaries + [summary]


def load_pool(cfg: StudyConfig) -> tuple[list[dict], list[dict]]:
    """(pool, eval) from the configured source."""
    pool, items, _ = load_sources(cfg)
    return pool, items


def nested_subsets(pool: list[dict], scales: list[int], seed: int, strategy: str = "random",
                   quality=None) -> dict[int, list[dict]]:
    """The subset of every scale: prefixes of one ``strategy`` order of the pool."""
    from helpers.selection import selection_order

    order, _, report = selection_order(pool, strategy, seed, quality)
    _check_scales(scales, len(order), strategy, report)
    return {s: [pool[i] for i in order[:s]] for s in scales}


def _check_scales(scales: list[int], available: int, strategy: str, report: dict) -> None:
    if scales[-1] > available:
        removed = f" after the {strategy} filters removed {report['removed']}" if report.get("removed") else ""
        raise ValueError(f"scales: the largest scale {scales[-1]} exceeds the pool of {available} items{removed}")


def _pool_question(r: dict) -> str:
    return question(r["instruction"], r.get("input", ""))


def check_contamination(pool: list[dict], items: list[dict]) -> None:
    """Stops the study if an eval question appears verbatim (normalised) in the training pool."""
    from helpers.dedup import verbatim_hits

    hits = verbatim_hits([_pool_question(r) for r in pool], [it["question"] for it in items])
    if hits:
        pairs = [f"{items[e].get('id', e)} = {pool[p].get('id', f'pool index {p}')}" for e, p in hits[:10]]
        raise ValueError(f"contamination: {len(hits)} eval questions appear verbatim in the pool: {pairs}"
                         f"{' ...' if len(hits) > 10 else ''}. Remove them from the training data, or set "
                         f"data.contamination.verbatim: remove to drop those pool items")


def _action(action: str, source: str) -> str:
    return ("report" if source == "builtin" else "remove") if action == "auto" else action


def _describe_lengths(values: list[int]) -> dict:
    if not values:
        return {"mean": 0, "median": 0, "p90": 0, "max": 0}
    ordered = sorted(values)
    return {"mean": round(statistics.fmean(values), 1), "median": statistics.median(values),
            "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], "max": ordered[-1]}


def subset_stats(records: list[dict], tokens: dict[str, int] | None = None) -> dict:
    """Size, items per category and length statistics (characters; tokens when counted) per category."""
    lengths = [len(r["instruction"]) + len(r.get("input", "")) + len(r["output"]) for r in records]
    cats = Counter(r["category"] for r in records)
    order = [c for c in CATEGORIES if c in cats] + sorted(set(cats) - set(CATEGORIES))
    by_cat: dict[str, dict] = {c: {"n": cats[c]} for c in order}
    per_cat_chars: dict[str, list[int]] = {c: [] for c in order}
    per_cat_tokens: dict[str, list[int]] = {c: [] for c in order}
    for r, n in zip(records, lengths):
        per_cat_chars[r["category"]].append(n)
        if tokens is not None:
            per_cat_tokens[r["category"]].append(tokens[r["id"]])
    for c in order:
        by_cat[c]["chars"] = _describe_lengths(per_cat_chars[c])
        if tokens is not None:
            by_cat[c]["tokens"] = _describe_lengths(per_cat_tokens[c])
    out = {
        "n": len(records),
        "categories": {c: cats[c] for c in order},
        "chars": {"mean": round(statistics.fmean(lengths), 1) if lengths else 0,
                  "median": statistics.median(lengths) if lengths else 0, "max": max(lengths, default=0)},
    }
    if tokens is not None:
        out["tokens"] = _describe_lengths([tokens[r["id"]] for r in records])
    out["by_category"] = by_cat
    return out


def _tokenizer(cfg: StudyConfig):
    """The base model's tokenizer when it is cheap to get (see ``data.length_unit``), else None."""
    unit = cfg.data.length_unit
    if unit == "chars":
        return None, "chars"
    from helpers import model

    if unit == "auto" and cfg.model.base != model.EMBEDDED and not resolve(cfg.model.base).exists():
        return None, f"chars (the tokenizer of {cfg.model.base} is not on this machine)"
    path = model.base_model_path(cfg)
    try:
        return model.load_tokenizer(path), f"tokens ({cfg.model.base})"
    except Exception as e:  # a local folder without a tokenizer: fall back, and say so
        if unit == "tokens":
            raise ValueError(f"data.length_unit: tokens, but no tokenizer could be loaded from {path}: {e}") from None
        return None, f"chars (no tokenizer in {path})"


def _count_tokens(tok, records: list[dict]) -> dict[str, int]:
    """Tokens of each record's training text: the prompt (question) and the answer."""
    from helpers.prompt import format_prompt

    out = {}
    for lo in range(0, len(records), 1024):
        batch = records[lo: lo + 1024]
        texts = [format_prompt(r["instruction"], r.get("input", "")) + r["output"] for r in batch]
        ids = tok(texts, add_special_tokens=False)["input_ids"]
        out.update({r["id"]: len(x) for r, x in zip(batch, ids)})
    return out


def _say(msg: str) -> None:
    print(msg, flush=True)


def prepare(cfg: StudyConfig, study_dir: Path) -> dict:
    """Write pool.jsonl, eval.jsonl, subsets/<scale>.jsonl, removed.jsonl and data_stats.json; return the stats."""
    from helpers import dedup, selection

    pool, items, sources = load_sources(cfg, study_dir)
    loaded = len(pool)
    _say(f"loaded {loaded} pool items and {len(items)} eval items from "
         f"{', '.join(dict.fromkeys(s['file'] for s in sources))}")
    removed: list[dict] = []
    filters: dict[str, dict] = {}
    cc, dc = cfg.data.contamination, cfg.data.dedup

    # 2. verbatim eval questions in the pool
    hits = dedup.verbatim_hits([_pool_question(r) for r in pool], [it["question"] for it in items])
    if hits and cc.verbatim == "error":
        check_contamination(pool, items)
    drop = {p for _, p in hits}
    removed += [{"id": pool[p]["id"], "step": "verbatim", "reason": "eval question verbatim",
                 "eval_id": items[e]["id"]} for e, p in hits]
    pool = [r for i, r in enumerate(pool) if i not in drop]
    filters["verbatim"] = {"action": cc.verbatim, "removed": len(drop)}
    _say(f"verbatim check: {len(hits)} eval questions found in the pool; {len(drop)} pool items removed")

    # 3. exact and near duplicates
    action = _action(dc.action, cfg.data.source)
    keep, dup_notes, counts = dedup.dedup_records(pool, _pool_question, dc.threshold, dc.ngram, dc.num_perm)
    found = counts["exact"] + counts["near"]
    filters["dedup"] = {"action": action, "ngram": dc.ngram, "threshold": dc.threshold, "num_perm": dc.num_perm,
                        "bands": counts["bands"], "rows": counts["rows"], "exact": counts["exact"],
                        "near": counts["near"], "removed": found if action == "remove" else 0}
    if action == "remove":
        removed += [{**n, "step": "dedup"} for n in dup_notes]
        pool = [r for r, k in zip(pool, keep) if k]
    _say(f"dedup ({action}): {counts['exact']} exact and {counts['near']} near duplicates "
         f"(character {dc.ngram}-grams, Jaccard >= {dc.threshold}); "
         f"{filters['dedup']['removed']} pool items removed")

    # 4. contamination by n-gram overlap
    action = _action(cc.action, cfg.data.source)
    texts = [f"{_pool_question(r)}\n{r['output']}" for r in pool]
    found, info = dedup.find_contamination(texts, [it["question"] for it in items], cc.n, cc.threshold, cc.max_df)
    filters["contamination"] = {
        "action": action, "n": cc.n, "threshold": cc.threshold, "max_df": cc.max_df, "overlapping": len(found),
        "eval_items_hit": len({f["eval"] for f in found}), **info,
        "removed": len(found) if action == "remove" else 0,
        "examples": [{"pool_id": pool[f["pool"]]["id"], "eval_id": items[f["eval"]]["id"],
                      "overlap": f["overlap"]} for f in found[:10]]}
    if action == "remove":
        drop = {f["pool"] for f in found}
        removed += [{"id": pool[f["pool"]]["id"], "step": "contamination", "reason": "overlaps an eval item",
                     "eval_id": items[f["eval"]]["id"], "overlap": f["overlap"]} for f in found]
        pool = [r for i, r in enumerate(pool) if i not in drop]
    _say(f"contamination ({action}): {len(found)} pool items hold >= {cc.threshold:.0%} of the distinctive "
         f"{cc.n}-grams of one of {filters['contamination']['eval_items_hit']} eval items; "
         f"{filters['contamination']['removed']} removed")

    # 5. selection: one nested order per strategy (a grid compares them on the same pool)
    subsets: dict[str, list[dict]] = {}
    for strategy in cfg.strategies:
        order, sel_removed, report = selection.selection_order(pool, strategy, cfg.seed, cfg.data.quality)
        if strategy == "quality":
            removed += [{**n, "step": "quality"} for n in sel_removed]
            reasons = ", ".join(f"{k} {v}" for k, v in report["reasons"].items() if v) or "none"
            _say(f"quality filters: {report['removed']} pool items "
                 f"{'left out of the quality subsets' if cfg.grid else 'removed'} ({reasons})")
        if strategy == "quality" or "selection" not in filters:
            filters["selection"] = report
        _check_scales(cfg.scales, len(order), strategy, report)
        for scale in cfg.scales:
            subsets[cfg.model_name(strategy, scale)] = [pool[i] for i in order[:scale]]
        _say(f"strategy {strategy}: {len(order)} candidates; subsets of {', '.join(map(str, cfg.scales))} items")

    same = identical_subsets(cfg, subsets)
    for d in same:
        _say(f"warning: strategy {d['strategy']} selects the same items in the same order as {d['same_as']} at "
             f"{', '.join(map(str, d['scales']))} examples; those models will equal {d['same_as']}'s, and the "
             "comparison there is 0 by construction, not a finding")

    tok, unit = _tokenizer(cfg)
    tokens = _count_tokens(tok, pool) if tok is not None else None
    write_jsonl(study_dir / "pool.jsonl", pool)
    write_jsonl(study_dir / "eval.jsonl", items)
    write_jsonl(study_dir / "removed.jsonl", removed)
    for name, records in subsets.items():
        write_jsonl(study_dir / "subsets" / f"{name}.jsonl", records)
    stats = {
        "source": cfg.data.source, "seed": cfg.seed, "strategy": cfg.strategy, "strategies": cfg.strategies, "length_unit": unit,
        "sources": sources, "loaded": loaded, "filters": filters,
        "pool": subset_stats(pool, tokens),
        "eval": {"n": len(items), "categories": dict(sorted(Counter(i["category"] for i in items).items()))},
        "subsets": {name: subset_stats(r, tokens) for name, r in subsets.items()},
        "identical_subsets": same,
    }
    write_json(study_dir / "data_stats.json", stats)
    return stats


def identical_subsets(cfg: StudyConfig, subsets: dict[str, list[dict]]) -> list[dict]:
    """``{strategy, same_as, scales}`` for each strategy of a grid whose subsets are the same items in
    the same order as an earlier strategy's at some scales (e.g. ``quality`` on a pool its filters
    find nothing in): training there repeats a run, and a reader must not take its zero difference
    for a result."""
    out = []
    for i, strategy in enumerate(cfg.strategies):
        for other in cfg.strategies[:i]:
            scales = [n for n in cfg.scales if [r["id"] for r in subsets[cfg.model_name(strategy, n)]]
                      == [r["id"] for r in subsets[cfg.model_name(other, n)]]]
            if scales:
                out.append({"strategy": strategy, "same_as": other, "scales": scales})
                break
    return out


def filter_table(stats: dict) -> list[dict]:
    """One row per filter of ``data_stats.json``: what it found, what it removed, with which settings."""
    f = stats.get("filters", {})
    rows = []
    if "verbatim" in f:
        rows.append({"step": "verbatim eval questions", "action": f["verbatim"]["action"],
                     "found": f["verbatim"]["removed"], "removed": f["verbatim"]["removed"], "settings": ""})
    if "dedup" in f:
        d = f["dedup"]
        rows.append({"step": "exact duplicates", "action": d["action"], "found": d["exact"],
                     "removed": d["exact"] if d["action"] == "remove" else 0, "settings": "normalised text"})
        rows.append({"step": "near duplicates", "action": d["action"], "found": d["near"],
                     "removed": d["near"] if d["action"] == "remove" else 0,
                     "settings": f"character {d['ngram']}-grams, Jaccard >= {d['threshold']}"})
    if "contamination" in f:
        c = f["contamination"]
        rows.append({"step": "overlap with eval items", "action": c["action"], "found": c["overlapping"],
                     "removed": c["removed"],
                     "settings": f"{c['n']}-grams, >= {c['threshold']} of an item's distinctive n-grams"})
    sel = f.get("selection", {})
    for reason, n in sel.get("reasons", {}).items():
        rows.append({"step": f"quality: {reason}", "action": "remove", "found": n, "removed": n, "settings": ""})
    return rows


def length_table(stats: dict, scale: str | int | None = None) -> list[dict]:
    """Per use case: items and length statistics of one subset (the largest by default)."""
    subsets = stats["subsets"]
    key = str(scale) if scale is not None else max(subsets, key=lambda name: split_model(name)[1])
    rows = []
    for cat, s in subsets[key].get("by_category", {}).items():
        row = {"category": cat, "n": s["n"], **{f"chars_{k}": v for k, v in s["chars"].items()}}
        row.update({f"tokens_{k}": v for k, v in s.get("tokens", {}).items()})
        rows.append(row)
    return rows
