"""environment.yml (conda users) and pyproject.toml (pip users) must list the same dependencies."""
import tomllib

import yaml

from helpers.study.paths import REPO


def test_environment_yml_matches_pyproject():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(p for p in pip if p != "-e .") == sorted(deps)
    py = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert py == ["python=3.11"]


def test_torch_is_pinned_exactly():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.13.0" in deps


def test_the_gpu_extra_brings_deepspeed_and_environment_yml_names_every_extra():
    """Extras stay out of the conda environment (DeepSpeed and vLLM only make sense on a GPU machine), but
    environment.yml tells its users how to add each one, so the two files stay in step."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("deepspeed") for req in extras["gpu"])
    text = (REPO / "environment.yml").read_text()
    assert all(f'pip install -e ".[{name}]"' in text for name in extras)
