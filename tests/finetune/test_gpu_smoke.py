"""The CPU-only parts of benchmarks/gpu_smoke.py: its tiny model, tokenizer, configs and files, and its refusal
without a GPU (the GPU parts need a machine with one; none was available to this project)."""
import importlib.util

import pytest
import torch

from helpers.finetune.launch import launch_command, zero_settings
from helpers.study.files import read_jsonl
from helpers.study.loading import load_config, study_dir
from helpers.study.models import load_causal_lm, load_tokenizer
from helpers.study.paths import REPO


def smoke_module():
    spec = importlib.util.spec_from_file_location("gpu_smoke", REPO / "benchmarks" / "gpu_smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # builds and trains studies of the script
def test_gpu_smoke_prepares_a_tiny_bloom_and_zero3_studies_on_the_cpu(tmp_path):
    smoke = smoke_module()
    configs = smoke.prepare(tmp_path, 32)
    assert set(configs) == {"full", "lora"}
    for method, path in configs.items():
        cfg = load_config(path)
        assert (cfg.train.method, cfg.train.num_processes, cfg.train.accelerate_config) == \
            (method, 1, "configs/accelerate/deepspeed_zero3.yaml")
        assert zero_settings(cfg.train.accelerate_config)["stage"] == 3
        assert zero_settings(cfg.train.accelerate_config)["bf16"] is True and cfg.train.bf16 is True  # they agree
        cmd = launch_command(cfg, path, tmp_path, "32")
        assert cmd[cmd.index("--num_processes") + 1] == "1"
        assert cmd[cmd.index("--config_file") + 1].endswith("configs/accelerate/deepspeed_zero3.yaml")
        sd = study_dir(cfg, tmp_path)
        assert len(read_jsonl(sd / "subsets" / "32.jsonl")) == 32 and len(read_jsonl(sd / "eval.jsonl")) == 48
        assert cfg.model.base == str(tmp_path / "tiny-bloom")
    model = load_causal_lm(str(tmp_path / "tiny-bloom"))
    tok = load_tokenizer(str(tmp_path / "tiny-bloom"))
    assert type(model).__name__ == "BloomForCausalLM" and sum(p.numel() for p in model.parameters()) < 1e6
    text = "Human: 把这句话翻译成英文：今天天气很好\n\nAssistant: "
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text and tok.unk_token_id not in ids  # byte-level: nothing is unknown
    assert model(torch.tensor([ids])).logits.shape == (1, len(ids), len(tok))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the smoke run would really run")
def test_gpu_smoke_without_a_gpu_says_so_and_does_nothing(tmp_path, capsys):
    assert smoke_module().main(["--workdir", str(tmp_path / "smoke")]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "smoke").exists()
