import pytest

from helpers.study.loading import ConfigError, load_config
from helpers.study.paths import REPO


@pytest.mark.parametrize("name", ["default", "micro", "paper"])
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.study == name
    assert cfg.models[0] == "base" and len(cfg.models) == len(cfg.scales) + 1


def test_default_scales_follow_the_paper_ratio():
    cfg = load_config("configs/default.yaml")
    assert len(cfg.scales) == 4
    assert [s / cfg.scales[0] for s in cfg.scales] == [1, 3, 5, 10]


def test_paper_config_has_belle_settings():
    cfg = load_config("configs/paper.yaml")
    assert cfg.scales == [200000, 600000, 1000000, 2000000]
    assert cfg.model.base == "bigscience/bloomz-7b1-mt"
    t = cfg.train
    assert (t.batch_size, t.epochs, t.lr, t.lr_scheduler, t.weight_decay) == (64, 2, 3e-6, "constant", 0.001)
    assert (cfg.judge.kind, cfg.judge.model, cfg.judge.runs) == ("openai", "gpt-3.5-turbo-0125", 3)
    # answers through vLLM on GPUs; the largest scale is the whole pool that filtering leaves, as the paper's 2M
    assert cfg.generate.backend == "vllm" and cfg.generate.vllm.dtype == "bfloat16"
    assert cfg.data.largest_scale == "whole_pool"


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_key_is_named(tmp_path):
    p = write(tmp_path, "study: x\nscales: [1, 2]\ntrain:\n  lerning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"train\.lerning_rate: unknown key") as e:
        load_config(p)
    assert str(p) in str(e.value)


def test_unknown_top_level_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"scale: unknown key"):
        load_config(write(tmp_path, "study: x\nscales: [1]\nscale: [3]\n"))


@pytest.mark.parametrize("body, key", [
    ("scales: [0, 5]", "scales"),
    ("scales: [-3]", "scales"),
    ("scales: [10, 5]", "scales"),
    ("scales: [5]\ntrain: {lr: -1}", "train.lr"),
    ("scales: [5]\njudge: {kind: chatgpt}", "judge.kind"),
    ("scales: [5]\ngenerate: {max_new_tokens: {default: 8, poetry: 9}}", "generate.max_new_tokens"),
    ("scales: [50000]", "scales"),
    ("scales: [5]\ntrain: {batch_size: 6, per_device_batch_size: 4}", "train"),
])
def test_bad_values_are_named(tmp_path, body, key):
    with pytest.raises(ConfigError, match=rf"\n  {key}[.:]"):
        load_config(write(tmp_path, f"study: x\n{body}\n"))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_a_config_extends_another_and_says_only_what_differs(tmp_path):
    (tmp_path / "base.yaml").write_text("study: base\nscales: [4, 8]\ntrain: {lr: 0.1, batch_size: 4, per_device_batch_size: 4}\n")
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("extends: ../base.yaml\nstudy: child\ntrain: {lr: 0.2}\nscales: [8]\n")
    cfg = load_config(child)
    assert (cfg.study, cfg.scales, cfg.train.lr, cfg.train.batch_size) == ("child", [8], 0.2, 4)


def test_strategies_config_is_the_default_study_with_a_list_of_strategies():
    default, grid = load_config("configs/default.yaml"), load_config("configs/strategies.yaml")
    assert grid.strategies == ["random", "stratified", "quality"] and grid.study == "strategies"
    same = {k: v for k, v in grid.model_dump().items() if k not in ("study", "strategy")}
    assert same == {k: v for k, v in default.model_dump().items() if k not in ("study", "strategy")}
    assert len((REPO / "configs" / "strategies.yaml").read_text().split("\n")) < 10


def test_extends_errors_name_the_files(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("extends: b.yaml\nstudy: a\n")
    b.write_text("extends: a.yaml\nscales: [1]\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(a)
    b.write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml: config file not found \(extended by .*b\.yaml\)"):
        load_config(a)


def test_set_overrides_take_yaml_values_and_are_checked():
    cfg = load_config("configs/default.yaml", ["train.lr=1e-4", "scales=[64, 128]", "train.lora.r=8", "study=lr"])
    assert (cfg.train.lr, cfg.scales, cfg.train.lora.r, cfg.study) == (1e-4, [64, 128], 8, "lr")
    assert load_config("configs/default.yaml").train.lr == 3e-4  # the file itself is untouched
    with pytest.raises(ConfigError, match=r"with --set train\.lerning_rate=1: invalid config\n  train\.lerning_rate: unknown key"):
        load_config("configs/default.yaml", ["train.lerning_rate=1"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config("configs/default.yaml", ["train.lr"])
    with pytest.raises(ConfigError, match="study is not a section"):
        load_config("configs/default.yaml", ["study.name=x"])
    with pytest.raises(ConfigError, match=r"\n  train\.lr: "):
        load_config("configs/default.yaml", ["train.lr=-1"])


def test_repeated_llm_judge_runs_at_temperature_0_load_without_a_warning_and_offline_runs_are_an_error(tmp_path):
    """The paper's setting (three runs at temperature 0: their spread is the server's nondeterminism) is a valid
    study, paper.yaml first among them; the one config whose repeated runs are identical by construction, the
    deterministic offline judge, is refused, since it runs once."""
    import warnings

    head = "study: x\nscales: [1, 2]\njudge:\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (load_config("configs/paper.yaml").judge.runs, load_config("configs/paper.yaml").judge.temperature) == (3, 0)
        cfg = load_config(write(tmp_path, head + "  kind: openai\n  runs: 3\n  others:\n    b: {kind: openai, runs: 2}\n"))
        assert (cfg.judge.runs, cfg.judge.others["b"].runs, cfg.judge.temperature) == (3, 2, 0)
    with pytest.raises(ConfigError, match=r"judge\.runs: has no effect with judge\.kind: offline .*runs once"):
        load_config(write(tmp_path, head + "  kind: offline\n  runs: 2\n"))


