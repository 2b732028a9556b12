"""Duplicates and overlap: near-duplicate removal (MinHash LSH) and eval contamination (n-grams).

De-duplication (``Deduper``)
    Texts are compared as sets of character n-grams (Chinese has no spaces to split words on)
    of their normalised form (``normalize``: NFKC, case-folded, whitespace removed). Exact
    duplicates of the normalised text are caught first by a hash; the rest go through MinHash
    signatures and a banded LSH index (``BandIndex``, with the band layout datasketch's
    ``MinHashLSH`` picks for the threshold), which proposes earlier *kept* texts as candidates; a
    candidate whose exact Jaccard similarity with the text is at least ``threshold`` makes the
    text a near duplicate. Only kept texts enter the index, so the result
    is the greedy "keep the first of each group" pass in input order, and ``add(text) -> bool``
    works one text at a time (the self-instruct stage can use it while generating).

    Signatures are computed for many texts at once with numpy: one vectorised polynomial hash
    per n-gram, then datasketch's ``affine32`` scheme (MurmurHash3 finaliser, then
    ``a * h + b mod 2**32`` with the permutations of ``datasketch.MinHash(num_perm, seed)``) and a
    minimum per text (``signatures``); the tests check it against ``MinHash.update_batch`` bit for bit.

Contamination (``find_contamination``)
    Each eval question is split into character n-grams (``n``); a pool record (instruction,
    input and output) overlaps an eval item when it contains at least ``threshold`` of that
    item's n-grams. N-grams found in more than ``max_df`` pool records are template text
    ("判断下面这条评论的情感倾向……") and do not count on either side: otherwise every pool item
    that shares a prompt template with an eval item would look contaminated. An eval question
    shorter than ``n`` is one n-gram (it must occur as a whole). ``verbatim_hits`` finds eval
    questions whose normalised text equals a pool question.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

_WS = re.compile(r"\s+")

_P = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime as the polynomial base

_FMIX64 = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))

_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))

_CHUNK = 1 << 17  # n-grams per signature block (x num_perm x 4 bytes of scratch)

VERIFY_MARGIN = 0.2
"""LSH candidates whose signature-estimated similarity is more than this below the threshold are not
checked exactly (with 64 permutations a pair at the threshold falls that low about once in 5,000)."""


_WIDE = tuple((chr(c), chr(c - 0xFEE0)) for c in (0xFF0C, 0xFF1A, 0xFF1F, 0xFF01, 0xFF1B, 0xFF08, 0xFF09))
"""The full-width punctuation of most Chinese text ("，：？！；（）") and the ASCII NFKC maps each to."""


def nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, several times faster on Chinese text.

    Chinese text is rarely in NFKC only because of its full-width punctuation; those characters are
    replaced first (``str.replace``, a C scan each), then NFKC runs only on a text its quick check
    (``unicodedata.is_normalized``) does not pass. The result is the same: NFKC decomposes each of
    them to that ASCII character, and normalising a text whose characters were replaced by their
    own compatibility decompositions gives the same text. Normalising took most of the
    contamination check's time at 2M records.
    """
    for wide, ascii_ in _WIDE:
        if wide in text:
            text = text.replace(wide, ascii_)
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


def normalize(text: str) -> str:
    """The form texts are compared in: NFKC (full-width -> ASCII), case-folded, no whitespace."""
    return _WS.sub("", nfkc(text).casefold())


def _fmix64(h: np.ndarray) -> np.ndarray:
    s, m1, m2 = _FMIX64
    h = h ^ (h >> s)
    h = h * m1
    h = h ^ (h >> s)
    h = h * m2
    return h ^ (h >> s)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch applies it in its affine32 scheme."""
    s1, m1, s2, m2 = _FMIX32
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s1)


def shingle_hashes(texts: list[str], n: int, normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the character n-grams of normalised ``texts`` and per-text offsets.

    Text ``i`` owns ``hashes[offsets[i]:offsets[i + 1]]`` (at least one: a text shorter than ``n``
    is padded and is its own n-gram). Duplicates within a text are kept (harmless for minima).
    """
    padded = []
    for t in texts:
        t = t if normalized else normalize(t)
        padded.append(t + "\0" * (n - len(t)) if len(t) < n else t)
    lengths = np.fromiter((len(t) for t in padded), dtype=np.int64, count=len(padded))
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    total = len(codes) - n + 1
    h = np.zeros(max(total, 0), dtype=np.uint64)
    for j in range(n):
        h = h * _P + codes[j: j + total]
    counts = lengths - n + 1
    offsets = np.zeros(len(padded) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    starts = np.zeros(len(padded), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    positions = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1], dtype=np.int64)
    return (_fmix64(h[positions]) >> np.uint64(32)).astype(np.uint32), offsets


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(a, b)`` of ``datasketch.MinHash(num_perm, seed)``'s ``affine32`` scheme, as uint32."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def signatures(texts: list[str], n: int, permutations: tuple[np.ndarray, np.ndarray], normalized: bool = False) -> np.ndarray:
    """MinHash signatures (len(texts) x num_perm, uint32) of the texts' character n-grams.

    ``permutations``: ``permutations(num_perm, seed)``; ``normalized``: the texts are ``normalize``d already."""
    return _signatures(*shingle_hashes(texts, n, normalized=normalized), *permutations)


def _signatures(hashes, offsets, a, b) -> np.ndarray:
    out = np.empty((len(offsets) - 1, len(a)), dtype=np.uint32)
    hv = _fmix32(hashes)
    doc = 0
    while doc < len(out):  # blocks of whole texts with about _CHUNK n-grams
        end = int(np.searchsorted(offsets, offsets[doc] + _CHUNK, side="right")) - 1
        end = min(max(end, doc + 1), len(out))
        lo, hi = offsets[doc], offsets[end]
        block = hv[lo:hi, None] * a[None, :] + b[None, :]
        out[doc:end] = np.minimum.reduceat(block, offsets[doc:end] - lo, axis=0)
        doc = end
    return out


@dataclass(frozen=True)
class Decision:
    kept: bool
    reason: str | None = None  # "exact" or "near" when dropped
    duplicate_of: object = None  # the key of the kept text it duplicates
    similarity: float | None = None  # Jaccard similarity of the n-gram sets (1.0 for exact)


class BandIndex:
    """LSH over signature bands: the kept texts that share at least one whole band with a query.

    The same candidates as datasketch's ``MinHashLSH`` with ``bands`` x ``rows`` (band ``i`` is
    signature columns ``i*rows`` to ``(i+1)*rows``), but the band keys of a whole batch are made
    at once with numpy (one 64-bit hash of each band's values, mixed with the band number) and
    live in one dict of Python ints. datasketch builds a byte string per band per text and a set
    per key; at 2M texts its query and insert took half of the de-duplication's time. A 64-bit
    collision only adds a candidate, which the exact check then rejects.
    """

    def __init__(self, bands: int, rows: int):
        self.bands, self.rows = bands, rows
        self._index: dict[int, int | list[int]] = {}  # band key -> kept id(s); a list only once shared

    def keys(self, sigs: np.ndarray) -> np.ndarray:
        """The band keys (len(sigs) x bands, uint64) of signatures (len(sigs) x num_perm, uint32)."""
        cols = sigs[:, : self.bands * self.rows].astype(np.uint64).reshape(len(sigs), self.bands, self.rows)
        h = np.arange(1, self.bands + 1, dtype=np.uint64)[None, :] * np.uint64(0x9E3779B97F4A7C15)
        for j in range(self.rows):
            h = _fmix64(h * _P + cols[:, :, j])
        return h

    def query(self, keys: list[int]) -> list[int]:
        """Kept ids that share a band key with ``keys`` (one text's row of ``keys()``, as ints)."""
        found: list[int] = []
        for k in keys:
            v = self._index.get(k)
            if v is not None:
                if isinstance(v, list):
                    found.extend(v)
                else:
                    found.append(v)
        return list(dict.fromkeys(found)) if len(found) > 1 else found

    def insert(self, keys: list[int], ident: int) -> None:
        for k in keys:
            v = self._index.setdefault(k, ident)
            if v != ident:
                if isinstance(v, list):
                    v.append(ident)
                else:
                    self._index[k] = [v, ident]


class Deduper:
    """Incremental exact + near-duplicate filter; ``add(text)`` says whether the text was kept.

    LSH only proposes candidates; the likely ones (signature estimate within ``VERIFY_MARGIN`` of
    the threshold, best first) are checked with the exact Jaccard similarity of the two n-gram
    sets, so a drop always means "an earlier kept text is at least ``threshold`` similar" and
    misses come only from pairs LSH did not propose. The band layout
    is datasketch's optimum for ``threshold`` with false negatives weighted ``recall_weight``
    (64 permutations: 12 bands of 5 rows, which proposes 89% of pairs at Jaccard 0.7 and 99% at 0.8).

    >>> d = Deduper(threshold=0.7, ngram=3)
    >>> [d.add(t) for t in ["请写一首关于春天的诗。", "请写一首关于春天的诗", "请 写一首关于春天的诗。", "把这句话翻译成英文：我喜欢猫。"]]
    [True, False, False, True]
    >>> d.counts
    {'seen': 4, 'kept': 2, 'exact': 1, 'near': 1}
    """

    def __init__(self, threshold: float = 0.7, ngram: int = 3, num_perm: int = 64, seed: int = 1,
                 recall_weight: float = 0.9):
        from datasketch import MinHashLSH

        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold, self.ngram, self.num_perm, self.seed = threshold, ngram, num_perm, seed
        layout = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(1 - recall_weight, recall_weight))
        self.bands, self.rows = layout.b, layout.r
        self.index = BandIndex(self.bands, self.rows)
        self._permutations = permutations(num_perm, seed)
        self._sigs = np.empty((1024, num_perm), dtype=np.uint32)  # signatures of kept texts
        self._texts: list[str] = []  # normalised kept texts, for the exact check of candidates
        self._keys: list = []
        self._exact: dict[bytes, object] = {}
        self.counts = {"seen": 0, "kept": 0, "exact": 0, "near": 0}

    def add(self, text: str, key=None) -> bool:
        """Keep ``text`` (True) unless it duplicates a text kept before (False)."""
        return self.add_many([text], None if key is None else [key])[0].kept

    def add_many(self, texts: list[str], keys: list | None = None, batch: int = 20000) -> list[Decision]:
        """``add`` for many texts in order (signatures and band keys computed in vectorised batches)."""
        out: list[Decision] = []
        for lo in range(0, len(texts), batch):
            chunk = texts[lo: lo + batch]
            chunk_keys = keys[lo: lo + batch] if keys is not None else \
                [self.counts["seen"] + i for i in range(len(chunk))]
            normal = [normalize(t) for t in chunk]
            digests = [hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest() for t in normal]
            fresh = [i for i, d in enumerate(digests) if d not in self._exact]
            sigs = signatures([normal[i] for i in fresh], self.ngram, self._permutations, normalized=True) \
                if fresh else None
            bands = self.index.keys(sigs).tolist() if fresh else None
            row = dict(zip(fresh, range(len(fresh))))
            for i, (text, key, digest) in enumerate(zip(normal, chunk_keys, digests)):
                self.counts["seen"] += 1
                if digest in self._exact:
                    self.counts["exact"] += 1
                    out.append(Decision(False, "exact", self._exact[digest], 1.0))
                    continue
                sig, band_keys = sigs[row[i]], bands[row[i]]
                best, best_sim = self._near(text, sig, self.index.query(band_keys))
                if best is not None:
                    self.counts["near"] += 1
                    out.append(Decision(False, "near", self._keys[best], round(best_sim, 4)))
                    continue
                internal = len(self._keys)
                if internal == len(self._sigs):
                    self._sigs = np.concatenate([self._sigs, np.empty_like(self._sigs)])
                self._sigs[internal] = sig
                self._texts.append(text)
                self._keys.append(key)
                self._exact[digest] = key
                self.index.insert(band_keys, internal)
                self.counts["kept"] += 1
                out.append(Decision(True))
        return out

    def _near(self, text: str, sig: np.ndarray, cands: list[int]) -> tuple[int | None, float]:
        """The first likely candidate (best signature estimate first) at least ``threshold`` similar."""
        if not cands:
            return None, 0.0
        cands = np.asarray(cands, dtype=np.int64)
        est = (self._sigs[cands] == sig).mean(axis=1)
        likely = np.flatnonzero(est >= self.threshold - VERIFY_MARGIN)
        if not len(likely):
            return None, 0.0
        grams = _grams(text, self.ngram)
        for c in cands[likely[np.argsort(-est[likely], kind="stable")]].tolist():
            other = _grams(self._texts[c], self.ngram)
            sim = len(grams & other) / len(grams | other)
            if sim >= self.threshold:
                return c, sim
        return None, 0.0


def dedup_records(records: list[dict], text_of, threshold: float, ngram: int, num_perm: int = 64,
                  seed: int = 1) -> tuple[list[bool], list[dict], dict]:
    """(keep mask, removed notes, counts) of a greedy pass over ``records`` in order.

    ``text_of(record)`` is the text compared (the question: instruction and input). Removed
    notes are ``{id, reason, duplicate_of, similarity}``.
    """
    d = Deduper(threshold=threshold, ngram=ngram, num_perm=num_perm, seed=seed)
    decisions = d.add_many([text_of(r) for r in records], [r["id"] for r in records])
    removed = [{"id": r["id"], "reason": f"{x.reason} duplicate", "duplicate_of": x.duplicate_of,
                "similarity": x.similarity} for r, x in zip(records, decisions) if not x.kept]
    return [x.kept for x in decisions], removed, {**d.counts, "bands": d.bands, "rows": d.rows}


def _grams(t: str, n: int) -> set[str]:
    """n-grams of an already normalised text; a text of at most n characters is one n-gram."""
    if len(t) <= n:
        return {t}
    return {t[i: i + n] for i in range(len(t) - n + 1)}


def ngrams(text: str, n: int) -> set[str]:
    """Character n-grams of the normalised text (the whole text when it is shorter than n)."""
    t = normalize(text)
    return _grams(t, n) if t else set()


def verbatim_hits(pool_questions: list[str], eval_questions: list[str]) -> list[tuple[int, int]]:
    """(eval index, pool index) pairs whose normalised questions are equal."""
    index: dict[str, int] = {}
    for i, q in enumerate(pool_questions):
        index.setdefault(normalize(q), i)
    return [(e, index[normalize(q)]) for e, q in enumerate(eval_questions) if normalize(q) in index]


def _hits(normal: list[str], keys: np.ndarray, key_grams: list[list[str]], n: int) -> dict[int, set[str]]:
    """``{position: eval n-grams it holds}`` for the normalised texts that hold any (n-grams of ``n`` characters).

    The n-grams of every text are hashed in one numpy pass (``shingle_hashes``) and looked up among
    the sorted hashes of the eval n-grams (``keys``; ``key_grams[k]``: the eval n-grams of hash
    ``keys[k]``); a text's hashed hits are then confirmed as substrings, so a 32-bit collision
    adds nothing. This replaces building a Python set of some 300 n-grams for each of millions of
    texts, which took most of the check's time at 2M records.
    """
    hashes, offsets = shingle_hashes(normal, n, normalized=True)
    pos = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)
    at = np.flatnonzero(keys[pos] == hashes)
    if not len(at):
        return {}
    texts = np.searchsorted(offsets, at, side="right") - 1
    starts = np.flatnonzero(np.r_[True, texts[1:] != texts[:-1]])
    out = {}
    for i, ks in zip(texts[starts].tolist(), np.split(pos[at], starts[1:])):
        t = normal[i]
        hit = {g for k in set(ks.tolist()) for g in key_grams[k] if g in t}
        if hit:
            out[i] = hit
    return out


def find_contamination(pool_texts: list[str], eval_questions: list[str], n: int, threshold: float,
                       max_df: int, chunk: int = 20000) -> tuple[list[dict], dict]:
    """Pool records that contain ``threshold`` of an eval question's distinctive n-grams.

    Returns ``([{pool, eval, overlap}], info)`` with indices into the two lists (one entry per
    pool record: the eval item it overlaps most) and ``info`` on the template n-grams ignored.
    The eval n-grams each pool text holds are found through hashes (``_hits``) and substring
    checks rather than by splitting every text into its n-gram set. The pool is
    normalised ``chunk`` texts at a time, so no second copy of a 2M-text pool is held.
    """
    eval_grams = [ngrams(q, n) for q in eval_questions]
    owners: dict[str, list[int]] = defaultdict(list)
    for e, grams in enumerate(eval_grams):
        for g in grams:
            owners[g].append(e)
    short = {next(iter(g)) for g in eval_grams if len(g) == 1 and len(next(iter(g))) < n}
    matches, df = [], Counter()
    full = sorted(g for g in owners if len(g) == n)  # the rest are the short questions, found as substrings
    hashed = shingle_hashes(full, n, normalized=True)[0] if full else np.empty(0, dtype=np.uint32)
    keys = np.unique(hashed)
    key_grams: list[list[str]] = [[] for _ in keys]
    for g, k in zip(full, np.searchsorted(keys, hashed).tolist()):
        key_grams[k].append(g)
    for lo in range(0, len(pool_texts), chunk):
        normal = [normalize(t) for t in pool_texts[lo: lo + chunk]]
        hits = _hits(normal, keys, key_grams, n) if full else {}
        if short:  # eval questions shorter than n must occur as a substring
            for i, t in enumerate(normal):
                found_short = {s for s in short if s in t}
                if found_short:
                    hits[i] = hits.get(i, set()) | found_short
        for i in sorted(hits):
            matches.append((lo + i, hits[i]))
            df.update(hits[i])
    common = {g for g, c in df.items() if c > max_df}
    distinctive = [len(g - common) for g in eval_grams]
    found = []
    for p, hit in matches:
        counts = Counter(e for g in hit - common for e in owners[g])
        best = None
        for e, c in counts.items():
            share = c / distinctive[e]
            if share >= threshold and (best is None or share > best[1]):
                best = (e, share)
        if best:
            found.append({"pool": p, "eval": best[0], "overlap": round(best[1], 3)})
    info = {"template_ngrams_ignored": len(common),
            "eval_items_all_template": sum(1 for d in distinctive if d == 0)}
    return found, info
