"""benchmarks/data_scale.py run small: the planted duplicates and eval questions are found, and the files and
the tokenization cache it builds are what the data and finetune stages would write."""
import importlib.util
import json
import statistics

import pytest

from helpers.study.paths import REPO


def bench_module():
    spec = importlib.util.spec_from_file_location("data_scale", REPO / "benchmarks" / "data_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # the benchmark on 2,000 records
def test_data_scale_benchmark_finds_what_was_planted(tmp_path, capsys):
    out = tmp_path / "bench"
    result = bench_module().main(["--records", "2000", "--out", str(out), "--max-length", "256", "--sample", "200",
                                  "--keep"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1]) == result  # ends with one JSON line
    lines = [json.loads(x) for x in (out / "train_belle.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2000 and all(set(r) == {"instruction", "input", "output"} for r in lines)  # BELLE's layout
    outputs = sorted(len(r["output"]) for r in lines)
    assert outputs[-1] > 4 * statistics.median(outputs)  # a long tail of answer lengths
    assert 0.04 <= result["planted_duplicates"] / 2000 <= 0.06
    assert result["duplicate_share_found"] >= 0.9 and result["exact_found"] == 1.0
    assert result["near_at_threshold_found"] >= 0.95
    assert result["planted_eval"] == 20 and result["contamination_share_found"] == 1.0
    for step in ("load and validate", "verbatim check", "de-duplication", "contamination", "nested subsets",
                 "tokenization cache"):
        assert result["steps"][step]["seconds"] >= 0 and result["steps"][step]["peak_rss_gib"] > 0
    scales = result["scales"]
    subsets = [[json.loads(x)["id"] for x in (out / "study" / "subsets" / f"{s}.jsonl").read_text().splitlines()]
               for s in scales]
    assert [len(s) for s in subsets] == scales
    assert all(small == big[: len(small)] for small, big in zip(subsets, subsets[1:]))  # nested prefixes
    assert len([p for p in (out / "study" / "tokenized").iterdir() if p.is_dir()]) == 1  # one cache, every scale
    tokens = [result["scale_tokens"][str(s)] for s in scales]
    assert tokens == sorted(tokens) and tokens[0] > 0
