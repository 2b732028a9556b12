"""Stage 01: the instruction pool, the eval set and the nested training subsets.

``run`` runs, in this order, and prints and records (``data_stats.json``) what each step
removed and why; every removed pool item is listed in ``removed.jsonl`` with its reason:

1. load the pool and the eval set (the built-in suite, or files / Hugging Face datasets through
   ``helpers.data.loaders``, which map messy category labels and refuse bad records, or ``generated.jsonl``
   of the self-instruct stage with ``data.source: generate``);
2. verbatim check: an eval question found verbatim (normalised) in the pool stops the study
   (``data.contamination.verbatim: error``, the default) or removes that pool item;
3. de-duplication of the pool: exact, then near duplicates by MinHash LSH (``helpers.study.dedup``);
4. contamination: pool items containing most of an eval question's distinctive character
   n-grams are removed;
5. selection: the study's ``strategy`` (``helpers.data.selection``) orders the remaining pool; the
   subset of each scale is a prefix of that order, so every smaller scale is contained in every
   larger one (the paper's nested 0.2M ⊂ 0.6M ⊂ 1M ⊂ 2M) and the same seed gives the same files.
   With a list of strategies (the grid) each gets its own nested subsets, ``subsets/<strategy>-<scale>.jsonl``,
   drawn from the same de-duplicated pool; the ``quality`` filters then only narrow the quality subsets.
6. the mixture axis (``data.mixture``): ``subsets/mix-<name>.jsonl``, as many items as the largest scale's subset
   with the use cases weighted otherwise, drawn in the same order (``helpers.data.mixture``).

Steps 3 and 4 have ``action: auto``: they remove for file/hf sources and only report for the
built-in suite, whose pool and eval split are disjoint by construction (and whose templated
items resemble each other by design); the default study's files are therefore unchanged. With
``data.eval_file`` on the built-in pool (your eval set, our pool) nothing guarantees that split,
so step 4 removes there too; the verbatim check of step 2 runs for every source.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from helpers.data.stats import count_tokens, length_tokenizer, subset_stats
from helpers.study.config import StudyConfig
from helpers.study.dedup import dedup_records, find_contamination, verbatim_hits
from helpers.study.files import write_json, write_jsonl
from helpers.study.paths import resolve
from helpers.study.prompt import question


def load_sources(cfg: StudyConfig, study_dir: Path | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    """(pool, eval items, source summaries) from the configured source.

    ``generate``: the pool is ``<study_dir>/generated.jsonl`` of the self-instruct stage, read (and
    checked) like any train file; the eval set is ``data.eval_file`` if given, else the built-in
    suite's held-out eval split (``data.eval_per_category`` per use case).
    """
    if cfg.data.source == "generate":
        from helpers.data.loaders import load_eval, load_train
        from helpers.data.suite import build_suite

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
        from helpers.data.suite import build_suite

        pool_summary = {"file": "builtin suite", "kind": "train", "records": cfg.data.pool_size}
        if cfg.data.eval_file:  # the built-in pool, the user's eval set (the pool does not depend on the eval split)
            from helpers.data.loaders import load_eval

            pool, _ = build_suite(cfg.seed, cfg.data.pool_size, 0)
            items, eval_summary = load_eval(resolve(cfg.data.eval_file), category_map=cfg.data.category_map)
            return pool, items, [pool_summary, eval_summary]
        pool, items = build_suite(cfg.seed, cfg.data.pool_size, cfg.data.eval_per_category)
        return pool, items, [pool_summary, {"file": "builtin suite", "kind": "eval", "records": len(items)}]
    from helpers.data.loaders import load_eval, load_train

    if not cfg.data.eval_file:
        raise ValueError("data.eval_file: required when data.source is not builtin")
    pool, summaries, seen_ids = [], [], {}
    for spec in cfg.data.train_files:
        records, summary = load_train(spec, category_map=cfg.data.category_map, start=len(pool), seen_ids=seen_ids,
                                      revision=cfg.data.revision)
        pool.extend(records)
        summaries.append(summary)
    items, summary = load_eval(resolve(cfg.data.eval_file), category_map=cfg.data.category_map)
    return pool, items, summaries + [summary]


def nested_subsets(pool: list[dict], scales: list[int], seed: int, strategy: str = "random",
                   quality=None, largest: str = "exact") -> tuple[dict[int, list[dict]], list[dict], dict]:
    """``(subsets, removed, report)``: the subset of every scale (prefixes of one ``strategy`` order of the
    pool, so each scale holds the smaller ones), the pool items the strategy's filters leave out
    (``{id, reason}``) and the strategy's report. A scale larger than the candidates left is refused, but for
    the largest with ``largest="whole_pool"`` (``data.largest_scale``): it takes every candidate."""
    from helpers.data.selection import selection_order

    order, removed, report = selection_order(pool, strategy, seed, quality)
    _check_scales(scales, len(order), strategy, report, largest)
    return {s: [pool[i] for i in order[:s]] for s in scales}, removed, report


def _check_scales(scales: list[int], available: int, strategy: str, report: dict, largest: str = "exact") -> None:
    """Every scale fits the ``available`` records; with ``data.largest_scale: whole_pool`` the largest one takes
    what there is, so only the smaller ones must fit (and leave it more than the next smaller scale)."""
    removed = f" after the {strategy} filters removed {report['removed']}" if report.get("removed") else ""
    if largest == "whole_pool":
        below = scales[-2] if len(scales) > 1 else 0
        if below >= available:
            raise ValueError(f"scales: with data.largest_scale: whole_pool the largest scale takes the whole pool of "
                             f"{available} items{removed}, which is not more than the next scale {below}")
        return
    if scales[-1] > available:
        raise ValueError(f"scales: the largest scale {scales[-1]} exceeds the pool of {available} items{removed}; "
                         "data.largest_scale: whole_pool trains the largest scale on the whole pool that remains")


def _pool_question(r: dict) -> str:
    return question(r["instruction"], r.get("input", ""))


def check_contamination(pool: list[dict], items: list[dict]) -> None:
    """Stops the study if an eval question appears verbatim (normalised) in the training pool."""
    from helpers.study.dedup import verbatim_hits

    hits = verbatim_hits([_pool_question(r) for r in pool], [it["question"] for it in items])
    if hits:
        pairs = [f"{items[e].get('id', e)} = {pool[p].get('id', f'pool index {p}')}" for e, p in hits[:10]]
        raise ValueError(f"contamination: {len(hits)} eval questions appear verbatim in the pool: {pairs}"
                         f"{' ...' if len(hits) > 10 else ''}. Remove them from the training data, or set "
                         f"data.contamination.verbatim: remove to drop those pool items")


def _action(action: str, source: str, own_split: bool = True) -> str:
    """``auto``: report for the built-in suite with its own eval split (disjoint by construction), else remove."""
    return ("report" if source == "builtin" and own_split else "remove") if action == "auto" else action


def _say(msg: str) -> None:
    print(msg, flush=True)


def run(cfg: StudyConfig, study_dir: Path) -> dict:
    """Write pool.jsonl, eval.jsonl, subsets/<scale>.jsonl, removed.jsonl and data_stats.json; return the stats."""
    pool, items, sources = load_sources(cfg, study_dir)
    loaded = len(pool)
    _say(f"loaded {loaded} pool items and {len(items)} eval items from "
         f"{', '.join(dict.fromkeys(s['file'] for s in sources))}")
    removed: list[dict] = []
    filters: dict[str, dict] = {}
    cc, dc = cfg.data.contamination, cfg.data.dedup

    # 2. verbatim eval questions in the pool
    hits = verbatim_hits([_pool_question(r) for r in pool], [it["question"] for it in items])
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
    keep, dup_notes, counts = dedup_records(pool, _pool_question, dc.threshold, dc.ngram, dc.num_perm)
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

    # 4. contamination by n-gram overlap (the built-in pool against a user's eval file: removed, as for files)
    action = _action(cc.action, cfg.data.source, own_split=not cfg.data.eval_file)
    texts = [f"{_pool_question(r)}\n{r['output']}" for r in pool]
    found, info = find_contamination(texts, [it["question"] for it in items], cc.n, cc.threshold, cc.max_df)
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
        chosen, sel_removed, report = nested_subsets(pool, cfg.scales, cfg.seed, strategy, cfg.data.quality,
                                                     cfg.data.largest_scale)
        if strategy == "quality":
            removed += [{**n, "step": "quality"} for n in sel_removed]
            reasons = ", ".join(f"{k} {v}" for k, v in report["reasons"].items() if v) or "none"
            _say(f"quality filters: {report['removed']} pool items "
                 f"{'left out of the quality subsets' if cfg.grid else 'removed'} ({reasons})")
        if strategy == "quality" or "selection" not in filters:
            filters["selection"] = report
        for scale, records in chosen.items():
            subsets[cfg.model_name(strategy, scale)] = records
        sizes = [len(chosen[s]) for s in cfg.scales]
        _say(f"strategy {strategy}: {report['candidates']} candidates; subsets of {', '.join(map(str, sizes))} items"
             + (f" (the largest, {cfg.scales[-1]}, is the whole pool)" if sizes[-1] < cfg.scales[-1] else ""))

    # 6. the mixture axis: the full mixture's count, the use cases weighted otherwise (helpers.data.mixture)
    mixtures: dict[str, dict] = {}
    if cfg.mixture_models:
        from helpers.data.mixture import study_mixtures

        drawn, mixtures = study_mixtures(cfg, pool)
        subsets.update(drawn)
        _say(f"mixtures: {len(drawn)} subsets of {cfg.scales[-1]} items beside the full mixture "
             f"{cfg.mixture_reference} ({', '.join(drawn)})")
        reference = [r["id"] for r in subsets[cfg.mixture_reference]]
        for name, records in drawn.items():
            mixtures[name]["same_as_reference"] = [r["id"] for r in records] == reference
            if mixtures[name]["same_as_reference"]:
                _say(f"warning: {name} holds the same items in the same order as the full mixture "
                     f"{cfg.mixture_reference} (the use cases it reweighs have no item there), so its model equals "
                     "the full mixture's and its change is 0 by construction, not a finding")

    same = identical_subsets(cfg, subsets)
    for d in same:
        _say(f"warning: strategy {d['strategy']} selects the same items in the same order as {d['same_as']} at "
             f"{', '.join(map(str, d['scales']))} examples; those models will equal {d['same_as']}'s, and the "
             "comparison there is 0 by construction, not a finding")

    tok, unit = length_tokenizer(cfg)
    tokens = count_tokens(tok, pool) if tok is not None else None
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
        **({"mixtures": {"reference": cfg.mixture_reference, "models": mixtures}} if mixtures else {}),
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
