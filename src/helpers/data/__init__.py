"""Stage 01 (``notebooks/01_data.ipynb``): the instruction pool, the eval set and the nested subsets.

Reads the configured source: the built-in suite (``suite``), train and eval files or a Hugging
Face dataset (``loaders``), or ``generated.jsonl`` of the self-instruct stage. Writes, under
``data/<study>/``: ``pool.jsonl``, ``eval.jsonl``, ``subsets/<model>.jsonl``, ``removed.jsonl``
and ``data_stats.json``.

stage: ``stage.run(cfg, study_dir)`` -> the data stats (``data_stats.json``'s content).

    stage      the stage: load, contamination, de-duplication, selection, subsets (``run``)
    loaders    train and eval file formats (Alpaca, BELLE, chat records, parquet, hub datasets)
    suite      the built-in generated Chinese suite for the 12 use cases: generators by kind of use case
               (reasoning, understanding, writing), their words and templates in the .yaml file beside
               each, shared entities and the pool/eval split in vocab
    selection  subset order per strategy: random, stratified, quality
    stats      lengths and composition per subset, the notebook's tables
"""
from helpers.data.stage import run
from helpers.data.stats import filter_table, length_table

__all__ = ["run", "filter_table", "length_table"]
