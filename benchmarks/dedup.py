"""De-duplication at scale: MinHash LSH (ours) against exact all-pairs Jaccard, in one run.

Data: ``--n`` synthetic Chinese instructions. About 7% are items of the built-in task suite
(``helpers.data.suite`` generators, templated, so they contain natural near-duplicates); the rest put
one of those task questions behind a generated context sentence about a person, a place or an
event (names, cities, jobs, products, events from the suite's vocabularies), as real instruction
data often does. Then 5% of the items are replaced by edited copies of an item up to 5,000
positions earlier (punctuation, a polite prefix or suffix, one character changed or dropped,
full-width digits, extra spaces) and 2% by copies that differ only in whitespace/width/case; these
injected duplicates carry known labels.

- ours: ``helpers.study.dedup.Deduper.add_many`` over all items in order (exact hash, then MinHash LSH,
  candidates verified on their signatures): time, items/s and peak memory (max RSS).
- baseline: exact Jaccard similarity of every pair of the first ``--sample`` items (the data is in
  random order, so they are a random sample), by sparse matrix products in row blocks; its time is
  projected to all pairs of ``--n`` items (pairs grow with the square: x (n / sample)^2).
- quality: the exact greedy pass (drop an item when an earlier kept item has Jaccard >= threshold)
  on the sample is the truth; recall and precision are those of our drops on the same items (our
  decisions on the first items of the big run are exactly a run on the sample). Also the share of
  the injected duplicates we dropped, over the whole ``--n``.

Ends with one JSON line; ``ratio`` = projected all-pairs seconds / our seconds (how many times
faster). Goal on a 2-core machine: 1,000,000 items in at most 600 s and 8 GiB.

    python benchmarks/dedup.py [--n 1000000] [--sample 20000] [--ngram 3] [--threshold 0.7]
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import time

import numpy as np
from scipy import sparse

from helpers.data.suite import CITIES, EVENTS, GIVEN, HOBBIES, JOBS, PRODUCTS, SURNAMES, VENUES, generate
from helpers.study.categories import CATEGORIES
from helpers.study.dedup import Deduper, ngrams, normalize
from helpers.study.prompt import question

CONTEXTS = [
    "我叫{name}，是{city}的一名{job}，平时喜欢{hobby}。",
    "{name}下个月要去{city}参加{event}，",
    "我们公司在{city}的{venue}办了一场{event}，",
    "我最近买了一个{product}，用着还不错。",
    "作为一名{job}，{name}每天都很忙。",
    "周末我和朋友在{city}{hobby}，",
    "{name}在{city}开了一家小店，主要卖{product}。",
    "我是{city}人，从事{job}工作已经{years}年了。",
    "听说{city}最近要举办{event}，",
    "{name}的爱好是{hobby}，也喜欢收集{product}。",
]
POLITE_PREFIX = ["请", "麻烦", "帮我", "请你"]
POLITE_SUFFIX = ["谢谢。", "谢谢！", "请认真回答。", "？"]
SWAPS = {"你": "您", "。": "！", "，": "、", "吗": "呢", "请": "麻烦", "一下": "一下子", "什么": "啥"}


def task_items(per_category: int, seed: int) -> list[str]:
    out = []
    for c in CATEGORIES:
        out += [question(r["instruction"], r["input"]) for r in generate(c, per_category, seed=seed)]
    return out


def context(rng: random.Random) -> str:
    v = {"name": rng.choice(SURNAMES["pool"]) + rng.choice(GIVEN),
         "city": rng.choice(CITIES["pool"]), "job": rng.choice(JOBS),
         "hobby": rng.choice(HOBBIES), "event": rng.choice(EVENTS),
         "venue": rng.choice(VENUES), "product": rng.choice(PRODUCTS["pool"]),
         "years": rng.randint(2, 30)}
    return rng.choice(CONTEXTS).format(**v)


def near_copy(text: str, rng: random.Random) -> str:
    """One or two small edits of the kinds seen between generated instructions."""
    for _ in range(rng.choice((1, 1, 2))):
        op = rng.randrange(5)
        if op == 0:
            text = rng.choice(POLITE_PREFIX) + text
        elif op == 1:
            text = text.rstrip("。？！") + rng.choice(POLITE_SUFFIX)
        elif op == 2 and any(k in text for k in SWAPS):
            k = rng.choice([k for k in SWAPS if k in text])
            text = text.replace(k, SWAPS[k], 1)
        elif op == 3 and len(text) > 8:
            i = rng.randrange(1, len(text) - 1)
            text = text[:i] + text[i + 1:]
        else:
            i = rng.randrange(1, max(2, len(text) - 1))
            text = text[:i] + rng.choice("的了很也都还就") + text[i:]
    return text


def exact_copy(text: str, rng: random.Random) -> str:
    """Equal after normalisation: spaces, full-width digits/letters, case."""
    wide = text.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)}) if rng.random() < 0.5 else text
    i = rng.randrange(len(wide) + 1)
    return (wide[:i] + " " + wide[i:]).upper() if rng.random() < 0.3 else wide[:i] + "  " + wide[i:]


def make_data(n: int, seed: int) -> tuple[list[str], list[tuple[int, int, str]]]:
    rng = random.Random(seed)
    base = task_items(max(1, min(6000, n // 150)), seed)
    rng.shuffle(base)
    texts = []
    for i in range(n):
        if i < len(base) and rng.random() < 0.5 or rng.random() < 0.03:
            texts.append(base[i % len(base)])
        else:
            texts.append(context(rng) + rng.choice(base))
    rng.shuffle(texts)
    labels = []
    for i in range(1, n):
        u = rng.random()
        if u < 0.07:
            src = rng.randrange(max(0, i - 5000), i)
            kind = "near" if u < 0.05 else "exact"
            texts[i] = near_copy(texts[src], rng) if kind == "near" else exact_copy(texts[src], rng)
            labels.append((i, src, kind))
    return texts, labels


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def all_pairs(texts: list[str], n: int, threshold: float, block: int = 500) -> tuple[dict[int, list[int]], int]:
    """For every item, the earlier items with exact Jaccard >= threshold (sparse products in row blocks)."""
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, t in enumerate(texts):
        for g in ngrams(t, n):
            rows.append(i)
            cols.append(vocab.setdefault(g, len(vocab)))
    x = sparse.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(len(texts), len(vocab)))
    sizes = np.asarray(x.sum(axis=1)).ravel()
    xt = x.T.tocsc()
    similar: dict[int, list[int]] = {}
    pairs = 0
    for lo in range(0, len(texts), block):
        inter = (x[lo: lo + block] @ xt).tocoo()
        i, j = inter.row + lo, inter.col
        earlier = j < i
        i, j, c = i[earlier], j[earlier], inter.data[earlier]
        jac = c / (sizes[i] + sizes[j] - c)
        keep = jac >= threshold
        for a, b in zip(i[keep].tolist(), j[keep].tolist()):
            similar.setdefault(a, []).append(b)
        pairs += int(keep.sum())
    return similar, pairs


def greedy_truth(count: int, similar: dict[int, list[int]]) -> np.ndarray:
    """Dropped by the exact greedy pass: an earlier *kept* item is at or above the threshold."""
    dropped = np.zeros(count, dtype=bool)
    for j in range(count):
        dropped[j] = any(not dropped[i] for i in similar.get(j, ()))
    return dropped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=20_000)
    ap.add_argument("--ngram", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--num-perm", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t = time.perf_counter()
    texts, labels = make_data(args.n, args.seed)
    gen_s = time.perf_counter() - t
    chars = np.fromiter((len(normalize(s)) for s in texts[:20000]), dtype=np.int64)
    print(f"data: {len(texts):,} instructions in {gen_s:.0f} s, {len(labels):,} injected duplicates, "
          f"median {int(np.median(chars))} characters; e.g. {texts[0]!r}", flush=True)

    d = Deduper(threshold=args.threshold, ngram=args.ngram, num_perm=args.num_perm)
    t = time.perf_counter()
    decisions = d.add_many(texts)
    ours_s = time.perf_counter() - t
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    kept = np.array([x.kept for x in decisions])
    print(f"ours: {ours_s:.0f} s ({len(texts) / ours_s:,.0f} items/s), peak RSS {rss_gib:.2f} GiB, "
          f"counts {d.counts}, LSH {d.bands} bands x {d.rows} rows", flush=True)

    # injected, dropped; and those whose source was kept and is >= threshold similar (must be dropped)
    by_kind = {"near": [0, 0, 0, 0], "exact": [0, 0, 0, 0]}
    for i, src, kind in labels:
        s = by_kind[kind]
        s[0] += 1
        s[1] += not kept[i]
        if kept[src] and jaccard(ngrams(texts[i], args.ngram), ngrams(texts[src], args.ngram)) >= args.threshold:
            s[2] += 1
            s[3] += not kept[i]

    m = min(args.sample, len(texts))
    t = time.perf_counter()
    similar, pairs = all_pairs(texts[:m], args.ngram, args.threshold)
    base_s = time.perf_counter() - t
    truth = greedy_truth(m, similar)
    ours = ~kept[:m]
    hit = int((truth & ours).sum())
    recall = hit / max(1, int(truth.sum()))
    precision = hit / max(1, int(ours.sum()))
    projected = base_s * (args.n / m) ** 2
    print(f"baseline: exact all-pairs Jaccard of {m:,} items in {base_s:.1f} s ({pairs:,} pairs >= "
          f"{args.threshold}); projected to {args.n:,} items: {projected:,.0f} s ({projected / 3600:,.1f} h)")
    print(f"sample: exact greedy pass drops {int(truth.sum()):,}, ours {int(ours.sum()):,}; "
          f"recall {recall:.3f}, precision {precision:.3f}")
    print(f"injected near duplicates dropped {by_kind['near'][1]:,}/{by_kind['near'][0]:,} "
          f"({by_kind['near'][3]:,}/{by_kind['near'][2]:,} of those whose kept source has Jaccard >= "
          f"{args.threshold}); exact copies dropped {by_kind['exact'][1]:,}/{by_kind['exact'][0]:,}")
    print(json.dumps({
        "benchmark": "dedup", "n": args.n, "ngram": args.ngram, "threshold": args.threshold,
        "num_perm": args.num_perm, "bands": d.bands, "rows": d.rows,
        "seconds": round(ours_s, 1), "items_per_s": round(len(texts) / ours_s), "peak_rss_gib": round(rss_gib, 2),
        "kept": d.counts["kept"], "exact": d.counts["exact"], "near": d.counts["near"],
        "sample": m, "sample_all_pairs_s": round(base_s, 2), "sample_true_dropped": int(truth.sum()),
        "recall": round(recall, 4), "precision": round(precision, 4),
        "injected_near_recall": round(by_kind["near"][3] / max(1, by_kind["near"][2]), 4),
        "injected_exact_recall": round(by_kind["exact"][1] / max(1, by_kind["exact"][0]), 4),
        "projected_all_pairs_s": round(projected), "ratio": round(projected / ours_s, 1),
        "goal_met": bool(ours_s <= 600 and rss_gib <= 8),
    }))


if __name__ == "__main__":
    main()
