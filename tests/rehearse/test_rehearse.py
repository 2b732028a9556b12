"""The rehearsal (helpers.rehearse): its config changes sizes only, its stand-in answers the real openai client as
a paid endpoint would, the small rehearsal of paper.yaml passes (with DeepSpeed, slow), and the whole one (slow,
with DeepSpeed and vLLM's environment)."""
import importlib.util
import json
import os

import pytest

from helpers.rehearse.shrink import belle_records, shrunk_config
from helpers.rehearse.standin import FINGERPRINT, StandIn
from helpers.study.loading import load_config


def test_the_rehearsal_config_of_paper_yaml_changes_sizes_only(tmp_path):
    real = load_config("configs/paper.yaml")
    raw, info = shrunk_config("configs/paper.yaml", tmp_path, "http://127.0.0.1:9/v1")
    (tmp_path / "r.yaml").write_text(json.dumps(raw))
    cfg = load_config(tmp_path / "r.yaml")
    assert [s / cfg.scales[0] for s in cfg.scales] == [1, 3, 5, 10]
    same = lambda c: (c.train.method, c.train.accelerate_config, c.train.gradient_checkpointing, c.train.save_steps,  # noqa: E731
                      c.train.save_share, c.train.save_minutes, c.train.epochs, c.train.lr, c.train.bf16,
                      c.data.source, c.data.dedup, c.data.contamination, c.data.largest_scale, c.strategy,
                      c.generate.backend, c.generate.vllm.dtype, c.judge.model, c.judge.runs, c.judge.concurrency,
                      c.judge.temperature, c.judge.prompts_file)
    assert same(cfg) == same(real)
    assert cfg.judge.base_url == "http://127.0.0.1:9/v1" and cfg.train.num_processes == 2
    assert info["arch"] == "BloomForCausalLM" and info["params"] < 3e6
    from transformers import AutoConfig

    tiny = AutoConfig.from_pretrained(cfg.model.base)
    assert tiny.model_type == "bloom" and tiny.hidden_size // tiny.n_head == 128  # vLLM's CPU attention: not 16
    # the Hub dataset: a local folder in train_2M_CN's layout, 2 unique records short of the largest scale
    records = [json.loads(x) for x in (tmp_path / "hub" / "BelleGroup__train_2M_CN" / "train.json").read_text().splitlines()]
    assert set(records[0]) == {"instruction", "input", "output"}
    assert len(records) == 158 + 7 + 7 + 1 and info["planted"] == {"unique": 158, "exact": 7, "near": 7, "contaminated": 1}


def test_the_small_rehearsal_keeps_two_scales_and_answers_with_hf(tmp_path):
    raw, info = shrunk_config("configs/paper.yaml", tmp_path, "http://127.0.0.1:9/v1", small=True)
    (tmp_path / "r.yaml").write_text(json.dumps(raw))
    cfg = load_config(tmp_path / "r.yaml")
    assert cfg.scales == [8, 24] and cfg.generate.backend == "hf" and cfg.train.accelerate_config.endswith("zero3.yaml")
    assert "backend vllm -> hf (the small rehearsal; `make rehearse` runs vLLM)" in info["subs"]["generate"]


def test_planted_duplicates_are_what_the_data_stage_removes(tmp_path):
    from helpers.study.dedup import dedup_records

    records, planted = belle_records(100, 0, "长江流经哪些省份和直辖市以及它的源头在哪里")
    records = [{**r, "id": f"r{i}"} for i, r in enumerate(records)]
    keep, _, counts = dedup_records(records, lambda r: r["instruction"], 0.7, 3, 64)
    assert len(records) - sum(keep) == planted["exact"] + planted["near"]


def test_the_stand_in_answers_the_openai_client_with_a_score_a_model_name_and_a_fingerprint():
    import openai

    with StandIn(["gpt-3.5-turbo-0125"]) as s:
        client = openai.OpenAI(api_key="x", base_url=s.base_url, max_retries=0)
        assert [m.id for m in client.models.list()] == ["gpt-3.5-turbo-0125"]
        r = client.chat.completions.create(model="gpt-3.5-turbo-0125", messages=[{"role": "user", "content": "评分"}])
        assert r.model == "gpt-3.5-turbo-0125" and r.system_fingerprint == FINGERPRINT
        assert "得分：" in r.choices[0].message.content and r.usage.prompt_tokens > 0
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "x"}])
        assert s.requests == 1


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None or not os.environ.get("STUDY_VLLM_PYTHON"),
                    reason="needs DeepSpeed (the gpu extra) and vLLM's environment (make vllm-env, STUDY_VLLM_PYTHON)")
def test_the_rehearsal_of_paper_yaml_passes(tmp_path):
    from helpers.rehearse.run import rehearse

    lines = []
    assert rehearse("configs/paper.yaml", tmp_path, out=lines.append) == 0, "\n".join(lines)
    text = "\n".join(lines)
    for fact in ("resumed from its checkpoint", "ZeRO-3 in force", "vLLM engine found by the preflight",
                 "served model and system_fingerprint stored with every judgment", "the report shows the judge's fingerprint"):
        assert fact in text


# ZeRO-3 launched three times and a study through papermill: three to five minutes on two cores, so make test-all's
@pytest.mark.slow  # (make test's six minutes hold the micro study and the unit tests)
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs DeepSpeed (the gpu extra; make test installs it)")
def test_the_small_rehearsal_of_paper_yaml_passes(tmp_path):
    """What `make test-all` runs of the rehearsal: ZeRO-3 in 2 processes killed and resumed, the stand-in judge through
    the openai client, the report; two scales, hf in place of vLLM."""
    from helpers.rehearse.run import rehearse

    lines = []
    assert rehearse("configs/paper.yaml", tmp_path, out=lines.append, small=True) == 0, "\n".join(lines)
    text = "\n".join(lines)
    for fact in ("scale 8 resumed from its checkpoint", "ZeRO-3 in force", "models/24 loads with AutoTokenizer",
                 "backend vllm -> hf", "served model and system_fingerprint stored with every judgment",
                 "the report shows the judge's fingerprint"):
        assert fact in text
