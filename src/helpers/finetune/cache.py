"""Training rows from one tokenized copy of a strategy's order, cached in the study folder.

Why: at the paper's scale (2M records, 8 processes, 4 scales) tokenizing into Python lists in
every process for every scale costs 32 passes of the tokenizer and 8 copies of the rows in host
memory. Here the rows are tokenized once with ``datasets`` and stored as Arrow files, which
every process memory-maps (the copies share the OS page cache) and every scale reads.

What is tokenized
    The subsets of a strategy are nested prefixes of one order of the pool (every strategy of
    ``helpers.data.selection`` works so, random, stratified and quality alike, and the data stage
    writes ``subsets/<model>.jsonl`` as those prefixes), so the strategy's largest subset file holds
    that order up to the largest scale. That file is the cache's source. The rows come from
    ``helpers.finetune.tokens.tokenize`` itself, through ``Dataset.map(batched=True,
    num_proc=...)``, so they are the list path's ids and labels by construction.

Subsets
    A subset file that is a byte-for-byte prefix of the source file (what the data stage writes)
    is ``select(range(n))`` of the cache: a slice, no copy, no index mapping. A subset that is not
    (a file edited or replaced by hand, or drawn by a selection whose scales are not nested) cannot
    be a slice; its records are then looked up by the digest of their line and selected by
    position (an index mapping), and if some of them are not in the cache the subset file is
    tokenized as a source of its own. Either way training sees exactly the records of its file.

Key and place
    ``<study>/tokenized/<key>/`` (``datasets.save_to_disk``) with ``meta.json``. The key hashes the
    source file's bytes, the tokenizer (its saved files), ``train.max_length`` and the code of
    ``tokens``, of the prompt template (``helpers.study.prompt``) and of this module (those files
    only, not everything they import: an edit elsewhere in the package must not throw away hours of
    tokenizing): a change of any makes a new cache. After a new cache of a source file is built, the older caches of the same file are
    removed (one 2M-record cache takes gigabytes).

Processes
    Every process takes the file lock ``<study>/tokenized/<key>.lock``; the first one builds the
    cache in a temporary folder and renames it into place, the others wait for the lock and then
    load the finished cache from disk. A file lock rather than ``main_process_first``: it holds
    just as well for two scales trained at once by separate commands, and a builder killed midway
    leaves no cache that looks finished. The rows are prepared before ``TrainingArguments`` exists,
    so waiting processes hold no collective operation open (no NCCL timeout while one tokenizes).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from helpers.finetune.tokens import tokenize
from helpers.study.config import StudyConfig, is_mixture, split_model
from helpers.study.hashes import cached_digest
from helpers.study.imports import code_hashes
from helpers.study.models import usable_cores

FORMAT = 1
"""Bumped when the layout of a cache changes, so old caches are not read as new ones."""

ROWS_PER_PROCESS = 20_000
"""Below this many records per worker process, ``map`` runs in this process: starting workers costs more."""


def source_file(cfg: StudyConfig, study_dir: Path, data: str) -> Path:
    """The largest subset file of the strategy of model ``data`` (its order up to the largest scale).

    ``data`` itself when that file is missing (e.g. only one subset was written by hand), and for a mixture
    model (``data.mixture``), whose subset is no prefix of its strategy's order.
    """
    if is_mixture(data):
        return study_dir / "subsets" / f"{data}.jsonl"
    strategy = split_model(data)[0] or cfg.strategies[0]
    own = study_dir / "subsets" / f"{data}.jsonl"
    if strategy not in cfg.strategies:
        return own
    largest = study_dir / "subsets" / f"{cfg.strategy_models(strategy)[-1]}.jsonl"
    return largest if largest.is_file() else own


def compare_files(subset: Path, source: Path) -> tuple[str, bool]:
    """(sha256 of ``subset``'s bytes, whether ``subset`` is a byte-for-byte prefix of ``source``), in one read."""
    h = hashlib.sha256()
    prefix = True
    with open(subset, "rb") as a, open(source, "rb") as b:
        for chunk in iter(lambda: a.read(1 << 20), b""):
            h.update(chunk)
            if prefix and b.read(len(chunk)) != chunk:
                prefix = False
    return h.hexdigest(), prefix


def tokenizer_hash(tok) -> str:
    """sha256 of the files ``tok.save_pretrained`` writes: the same for a tokenizer from any path or the Hub."""
    h = hashlib.sha256()
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        for p in sorted(Path(tmp).iterdir()):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def cache_key(source_sha: str, tok_sha: str, max_length: int) -> str:
    raw = {"format": FORMAT, "source": source_sha, "tokenizer": tok_sha, "max_length": max_length,
           "code": code_hashes({"helpers.finetune.tokens", "helpers.study.prompt", __name__})}
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:24]


def line_digest(line: str) -> int:
    """A record's identity in the cache: 63 bits of blake2b of its line (without the newline)."""
    return int.from_bytes(hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def _lines(path: str):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if line.strip():
                yield {"line": line, "n": n}


def _rows(batch, tok, max_length: int, path: str):
    """One batch of lines (an Arrow table) to its rows (an Arrow table: typed arrays built in one call
    each, rather than datasets inferring the types of millions of Python ints and casting them)."""
    import pyarrow as pa

    lines = batch.column("line").to_pylist()
    records = []
    for line, n in zip(lines, batch.column("n").to_pylist()):
        try:
            records.append(json.loads(line))
        except ValueError as e:
            raise ValueError(f"{path}: line {n} is not valid JSON ({e}); rerun the data stage") from None
    rows = tokenize(records, tok, max_length)
    ids = [r["input_ids"] for r in rows]
    return pa.table({
        "input_ids": pa.array(ids, type=pa.list_(pa.int32())),
        "attention_mask": pa.array([r["attention_mask"] for r in rows], type=pa.list_(pa.int8())),
        "labels": pa.array([r["labels"] for r in rows], type=pa.list_(pa.int32())),
        "length": pa.array([len(x) for x in ids], type=pa.int32()),
        "digest": pa.array([line_digest(line) for line in lines], type=pa.int64())})


def build(source: Path, out: Path, tok, max_length: int, num_proc: int | None = None) -> None:
    """Tokenize every line of ``source`` into a dataset saved at ``out`` (built beside it, renamed into place)."""
    import datasets

    work = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    try:
        features = datasets.Features({"line": datasets.Value("string"), "n": datasets.Value("int64")})
        lines = datasets.Dataset.from_generator(_lines, gen_kwargs={"path": str(source)}, features=features,
                                                cache_dir=str(work / "hf"))
        if num_proc is None:
            num_proc = max(1, min(usable_cores(), len(lines) // ROWS_PER_PROCESS))
        out_features = datasets.Features({
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "attention_mask": datasets.Sequence(datasets.Value("int8")),
            "labels": datasets.Sequence(datasets.Value("int32")),
            "length": datasets.Value("int32"), "digest": datasets.Value("int64")})
        # new_fingerprint: the cache key already names what goes in; without it datasets hashes the function's
        # arguments with dill, the whole tokenizer included (seconds for Gemma's 262k-token vocabulary)
        rows = lines.with_format("arrow").map(_rows, batched=True, batch_size=1000,
                                              num_proc=num_proc if num_proc > 1 else None, new_fingerprint=out.name,
                         remove_columns=["line", "n"], features=out_features,
                         fn_kwargs={"tok": tok, "max_length": max_length, "path": str(source)},
                         desc=f"tokenizing {source.name}").with_format(None)
        rows.save_to_disk(str(work / "rows"))
        os.replace(work / "rows", out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cached_rows(source: Path, cache_dir: Path, tok, max_length: int, num_proc: int | None = None):
    """The tokenized rows of ``source`` (a ``datasets.Dataset``), built here unless another process did."""
    import datasets
    from filelock import FileLock

    from helpers.study.files import atomic_write_text

    source_sha = cached_digest(source)  # remembered by path, size, time and inode: every scale asks for it
    key = cache_key(source_sha, tokenizer_hash(tok), max_length)
    folder = cache_dir / key
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f"{key}.lock")):
        if not (folder / "meta.json").is_file():
            t0 = time.perf_counter()
            shutil.rmtree(folder, ignore_errors=True)  # a folder without meta.json is not a finished cache
            build(source, folder, tok, max_length, num_proc)
            meta = {"source": str(source), "source_sha256": source_sha, "max_length": max_length,
                    "tokenizer": getattr(tok, "name_or_path", ""), "format": FORMAT,
                    "seconds": round(time.perf_counter() - t0, 1)}
            atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2) + "\n")
            print(f"tokenized {source} once into {folder} in {meta['seconds']} s", flush=True)
            prune(cache_dir, source, keep=key)
        else:
            print(f"tokenized rows of {source.name}: {folder} (cached)", flush=True)
    return datasets.load_from_disk(str(folder))


def prune(cache_dir: Path, source: Path, keep: str) -> list[Path]:
    """Remove the caches of ``source`` other than ``keep`` (made with another tokenizer, length or file)."""
    removed = []
    for meta in cache_dir.glob("*/meta.json"):
        try:
            same = json.loads(meta.read_text()).get("source") == str(source)
        except (OSError, ValueError):
            continue
        if same and meta.parent.name != keep:
            shutil.rmtree(meta.parent, ignore_errors=True)
            (cache_dir / f"{meta.parent.name}.lock").unlink(missing_ok=True)
            removed.append(meta.parent)
    return removed


def subset_rows(cfg: StudyConfig, study_dir: Path, data: str, tok, num_proc: int | None = None):
    """(rows of ``subsets/<data>.jsonl`` as a ``datasets.Dataset``, sha256 of that file).

    See the module docstring: a slice of its strategy's cache when the file is a prefix of the
    source, else a selection by record digest, else a cache of its own.
    """
    subset = study_dir / "subsets" / f"{data}.jsonl"
    if not subset.is_file():
        raise FileNotFoundError(f"{subset} not found: run the data stage first")
    source = source_file(cfg, study_dir, data)
    sha, prefix = compare_files(subset, source)
    cache_dir = study_dir / "tokenized"
    max_length = cfg.train.max_length
    if prefix:
        rows = cached_rows(source, cache_dir, tok, max_length, num_proc)
        n = sum(1 for _ in _lines(str(subset)))
        return (rows if n == len(rows) else rows.select(range(n))), sha
    rows = cached_rows(source, cache_dir, tok, max_length, num_proc)
    where = {d: i for i, d in enumerate(rows.with_format("arrow")["digest"].to_pylist())}
    wanted = [where.get(line_digest(x["line"])) for x in _lines(str(subset))]
    if None not in wanted:
        print(f"{subset.name} is not a prefix of {source.name}: its {len(wanted)} records are selected "
              "from that cache by position", flush=True)
        return rows.select(wanted, keep_in_memory=True), sha  # in memory: nothing written into the cache
    print(f"{subset.name} holds records that are not in {source.name}: tokenized on its own", flush=True)
    return cached_rows(subset, cache_dir, tok, max_length, num_proc), sha


def row_lengths(rows) -> list[int]:
    """Tokens per row, read from the ``length`` column in one Arrow read (not row by row)."""
    return rows.with_format("arrow")["length"].to_pylist()


class ModelColumns:
    """A collator on the model's columns only: the cache's ``length`` column (there for the length-grouped
    sampler) stays out of the batch the model is called with."""

    def __init__(self, collator, drop: tuple[str, ...] = ("length", "digest")):
        self.collator, self.drop = collator, drop

    def __call__(self, features: list[dict]):
        return self.collator([{k: v for k, v in f.items() if k not in self.drop} for f in features])

