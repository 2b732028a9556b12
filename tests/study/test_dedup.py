"""De-duplication (MinHash LSH over character n-grams) and eval contamination by n-gram overlap."""
from __future__ import annotations

import numpy as np
import pytest

from helpers.study import dedup
from helpers.study.dedup import Deduper, dedup_records, find_contamination, ngrams, permutations, shingle_hashes, signatures, verbatim_hits

DISTINCT = ["请写一首关于春天的诗。", "把这句话翻译成英文：我喜欢猫。", "计算：12乘以7等于多少？",
            "列出三种适合夏天的水果。", "用一句话概括下面这段文字的主要内容。", "判断这条评论是正面还是负面：物流很快。",
            "写一个Python函数，返回列表中的最大值。", "中国的首都是哪座城市？"]


def minhash_of(text: str, n: int, num_perm: int = 64, seed: int = 1):
    """The signature of one text built by datasketch itself (the reference for ``signatures``)."""
    from datasketch import MinHash

    hashes, _ = shingle_hashes([text], n)
    m = MinHash(num_perm=num_perm, seed=seed, hashfunc=int, scheme="affine32")
    m.update_batch([int(x) for x in hashes])
    return m


def test_vectorised_signatures_equal_datasketch_minhash():
    texts = DISTINCT + ["ab", "", "Ｆｕｌｌ　ｗｉｄｔｈ TEXT"]
    sigs = signatures(texts, 5, permutations(64, 3))
    assert sigs.shape == (len(texts), 64) and sigs.dtype == np.uint32
    for text, sig in zip(texts, sigs):
        assert np.array_equal(minhash_of(text, n=5, num_perm=64, seed=3).hashvalues, sig)
    normal = [dedup.normalize(t) for t in texts]  # as the Deduper calls it
    assert np.array_equal(signatures(normal, 5, permutations(64, 3), normalized=True), sigs)


def test_signature_blocks_do_not_change_the_result(monkeypatch):
    texts = [t * (1 + i % 3) for i, t in enumerate(DISTINCT * 5)]
    whole = signatures(texts, 4, permutations(64, 1))
    monkeypatch.setattr(dedup, "_CHUNK", 7)  # force many small blocks
    assert np.array_equal(signatures(texts, 4, permutations(64, 1)), whole)


def test_exact_duplicates_after_normalisation_are_dropped():
    d = Deduper(threshold=0.7, ngram=5)
    assert d.add("请写一首关于春天的诗。", key="a")
    assert not d.add("请写一首关于 春天的诗。")  # whitespace
    assert not d.add("ＡＢＣ请写一首关于春天的诗。".replace("ＡＢＣ", ""))
    assert d.add("Hello World, how are you today?")
    assert not d.add("hello world, HOW are you today?")  # case
    assert d.counts == {"seen": 5, "kept": 2, "exact": 3, "near": 0}


def test_near_duplicates_are_dropped_and_distinct_texts_kept():
    d = Deduper(threshold=0.7, ngram=3)
    decisions = d.add_many(DISTINCT + [
        "请写一首关于春天的诗！",  # punctuation (Jaccard of the 3-gram sets 0.80)
        "请把这句话翻译成英文：我喜欢猫。",  # one character added in front (0.93)
        "判断这条评论是正面还是负面：物流很快！",  # punctuation (0.89)
    ], keys=[f"k{i}" for i in range(len(DISTINCT) + 3)])
    assert all(x.kept for x in decisions[:len(DISTINCT)])
    near = decisions[len(DISTINCT):]
    assert [x.kept for x in near] == [False, False, False]
    assert [x.duplicate_of for x in near] == ["k0", "k1", "k5"]
    assert all(x.reason == "near" and x.similarity >= 0.7 for x in near)


def test_add_one_at_a_time_equals_add_many():
    texts = DISTINCT + ["请写一首关于春天的诗歌。", "请写一首关于春天的诗。", "中国的首都是哪座城市"]
    one = Deduper()
    many = Deduper()
    assert [one.add(t) for t in texts] == [x.kept for x in many.add_many(texts, batch=4)]
    assert one.counts == many.counts


def test_only_kept_texts_are_compared_so_chains_do_not_cascade():
    # b is near a and dropped; c is near b but not near a: c is compared with kept texts only
    a = "今天天气很好，我们一起去公园散步吧，顺便看看湖边的花。"
    b = "今天天气很好，我们一起去公园散步吧，顺便看看湖边的柳树。"
    c = "今天天气不错，我们一起去公园跑步吧，顺便看看湖边的柳树。"
    def exact_j(x, y):
        return len(ngrams(x, 5) & ngrams(y, 5)) / len(ngrams(x, 5) | ngrams(y, 5))
    assert exact_j(a, b) >= 0.7 and exact_j(a, c) < 0.5
    d = Deduper(threshold=0.7, ngram=5)
    assert [d.add(t) for t in (a, b, c)] == [True, False, True]


def test_dedup_records_reports_what_it_removed():
    recs = [{"id": f"r{i}", "instruction": t, "input": ""} for i, t in enumerate(DISTINCT)]
    recs += [{"id": "dup", "instruction": DISTINCT[2], "input": ""},
             {"id": "near", "instruction": "请写一首关于春天的诗！", "input": ""}]
    keep, removed, counts = dedup_records(recs, lambda r: r["instruction"], threshold=0.7, ngram=3)
    assert keep == [True] * len(DISTINCT) + [False, False]
    assert removed == [{"id": "dup", "reason": "exact duplicate", "duplicate_of": "r2", "similarity": 1.0},
                       {"id": "near", "reason": "near duplicate", "duplicate_of": "r0",
                        "similarity": removed[1]["similarity"]}]
    assert counts["exact"] == 1 and counts["near"] == 1 and counts["kept"] == len(DISTINCT)


def test_band_index_proposes_the_candidates_datasketch_lsh_proposes():
    from datasketch import LeanMinHash, MinHashLSH

    rng = np.random.default_rng(0)
    base = [rng.choice(list("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以会"), size=40) for _ in range(60)]
    texts = []
    for i in range(400):  # variants of 60 texts with 0..5 characters changed: every degree of overlap
        chars = base[i % 60].copy()
        idx = rng.choice(40, size=int(rng.integers(0, 6)), replace=False)
        chars[idx] = rng.choice(list("天地玄黄宇宙洪荒日月盈昃辰宿列张"), size=len(idx))
        texts.append("".join(chars))
    sigs = signatures(texts, 3, permutations(64, 1))
    lsh = MinHashLSH(threshold=0.7, num_perm=64, weights=(0.1, 0.9))
    index = dedup.BandIndex(lsh.b, lsh.r)
    keys = index.keys(sigs).tolist()
    proposed = 0
    for i, sig in enumerate(sigs):
        lean = LeanMinHash(seed=1, hashvalues=sig, scheme="affine32")
        theirs = set(lsh.query(lean))
        ours = index.query(keys[i])
        assert len(ours) == len(set(ours)) and set(ours) == theirs, i
        proposed += len(theirs)
        if i % 3:  # insert only some (kept texts), as the deduper does
            lsh.insert(i, lean)
            index.insert(keys[i], i)
    assert proposed > 300  # the variants did collide: the comparison covered shared and unshared bands


def test_threshold_is_validated():
    with pytest.raises(ValueError, match="threshold"):
        Deduper(threshold=0)


# ---------------------------------------------------------------------------------------------
# contamination
# ---------------------------------------------------------------------------------------------


def test_verbatim_hits_normalise_whitespace_and_width():
    pool = ["计算：1+1", "写一首诗", "Translate: I like cats."]
    assert verbatim_hits(pool, ["计算：1 + 1", "计算：1+2", "translate:  I LIKE cats."]) == [(0, 0), (2, 2)]


def test_contamination_finds_paraphrased_eval_items_and_ignores_templates():
    template = "判断下面这条评论的情感倾向，回答正面或负面。\n"
    eval_q = [template + "这款保温杯的做工非常精致，保温效果也很好，下次还会回购。",
              "请介绍一下苏州园林的历史和主要特点。"]
    pool = [template + f"这个台灯{x}，推荐给大家。" for x in ("质量很好", "做工粗糙", "外观漂亮", "性价比高",
                                                            "物流很快", "用了就坏", "颜色好看", "很好用",
                                                            "声音太大", "特别亮", "很稳当", "很省电")]
    pool += ["这款保温杯的做工非常精致，保温效果也很好，下次还会回购吗？请判断情感。",  # leaked content
             "苏州园林的历史和主要特点是什么？请介绍一下。",  # reworded, shares most 6-grams? not necessarily
             "写一首关于秋天的诗。"]
    found, info = find_contamination(pool, eval_q, n=6, threshold=0.5, max_df=10)
    hits = {f["pool"]: f["eval"] for f in found}
    assert hits.get(12) == 0  # the leaked review, despite not sharing the template
    assert not any(p < 12 for p in hits)  # sharing only the template does not count
    assert 14 not in hits
    assert info["template_ngrams_ignored"] > 0


def test_short_eval_questions_must_occur_whole():
    found, _ = find_contamination(["请问：中国的首都是哪里？谢谢", "首都在哪"], ["中国的首都是哪里"], n=10,
                                  threshold=0.5, max_df=10)
    assert [f["pool"] for f in found] == [0]


def reference_contamination(pool_texts, eval_questions, n, threshold, max_df):
    """find_contamination as it was before the hashed prefilter: every pool text split into its n-gram set."""
    from collections import Counter, defaultdict

    from helpers.study.dedup import normalize

    eval_grams = [ngrams(q, n) for q in eval_questions]
    owners = defaultdict(list)
    for e, grams in enumerate(eval_grams):
        for g in grams:
            owners[g].append(e)
    short = {next(iter(g)) for g in eval_grams if len(g) == 1 and len(next(iter(g))) < n}
    matches, df = [], Counter()
    for p, text in enumerate(pool_texts):
        hit = ngrams(text, n) & owners.keys()
        hit |= {s for s in short if s in normalize(text)}
        if hit:
            matches.append((p, hit))
            df.update(hit)
    common = {g for g, c in df.items() if c > max_df}
    distinctive = [len(g - common) for g in eval_grams]
    found = []
    for p, hit in matches:
        counts = Counter(e for g in hit - common for e in owners[g])
        best = None
        for e, c in counts.items():
            if c / distinctive[e] >= threshold and (best is None or c / distinctive[e] > best[1]):
                best = (e, c / distinctive[e])
        if best:
            found.append({"pool": p, "eval": best[0], "overlap": round(best[1], 3)})
    return found


@pytest.mark.parametrize("n, with_short", [(5, False), (5, True), (10, False)])
def test_contamination_through_hashed_candidates_equals_checking_every_text(n, with_short):
    """The numpy prefilter and the chunked pass change nothing: the same finds as splitting every pool text
    into its n-gram set, on templated texts where many share n-grams with the eval questions."""
    import random

    from helpers.data.suite import build_suite
    from helpers.study.prompt import question

    pool, items = build_suite(0, 600, 3)
    rng = random.Random(0)
    texts = [f"{question(r['instruction'], r['input'])}\n{r['output']}" for r in pool]
    for k, it in enumerate(items[:12]):  # some eval questions planted, whole or in part, in full-width form
        q = it["question"] if k % 2 else it["question"][: len(it["question"]) * 2 // 3].upper()
        texts[rng.randrange(len(texts))] += "ＡＢ " + q
    texts += ["", "短", "ab", "一加一"]
    questions = [it["question"] for it in items] + (["一加一", "ab"] if with_short else [])
    fast = find_contamination(texts, questions, n=n, threshold=0.5, max_df=20, chunk=97)
    assert fast[0] == reference_contamination(texts, questions, n, 0.5, 20) and len(fast[0]) >= 6
    if with_short:
        assert len(texts) - 1 in {f["pool"] for f in fast[0]}  # "一加一" holds a short eval question whole


def test_fast_nfkc_equals_unicodedata():
    import random
    import unicodedata

    from helpers.study.dedup import nfkc

    tricky = ["全角，标点：？！", "ＡＢＣ１２３ａｂｃ", "Ａ\u0301", "ｶﾞｷﾞ", "ﬁ ① ㍿ Ⅻ", "e\u0301\u0323", "，\u0301", "中文。"]
    rng = random.Random(0)
    pools = [range(0x20, 0x250), range(0x300, 0x370), range(0x3000, 0x3100), range(0x4E00, 0x4E80),
             range(0xFF00, 0xFFEF), range(0x1100, 0x1200), range(0xAC00, 0xAC40)]
    texts = tricky + ["".join(chr(rng.choice(rng.choice(pools))) for _ in range(rng.randint(1, 30)))
                      for _ in range(5000)]
    for t in texts:
        assert nfkc(t) == unicodedata.normalize("NFKC", t), ascii(t)
