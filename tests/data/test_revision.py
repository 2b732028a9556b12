"""``data.revision``: a pinned Hub dataset revision reaches datasets, enters the fingerprint, and is checked."""
import datasets
import httpx
import pytest
from builders import make_config
from pydantic import ValidationError

from helpers.data.loaders import load_train
from helpers.study.records import DataError

HUB = {"source": "hf", "train_files": ["BelleGroup/train_2M_CN"], "eval_file": "e.jsonl"}


def test_the_revision_reaches_load_dataset_for_a_hub_name_only(monkeypatch, tmp_path):
    calls = []

    def fake(name, *args, **kw):
        calls.append((name, kw.get("revision")))
        return datasets.Dataset.from_list([{"instruction": "计算：1+1", "input": "", "output": "2"}])

    monkeypatch.setattr(datasets, "load_dataset", fake)
    recs, summary = load_train("BelleGroup/train_2M_CN", revision="0123abc")
    assert calls == [("BelleGroup/train_2M_CN", "0123abc")] and recs[0]["output"] == "2"
    assert summary["format"] == "datasets hub @ 0123abc"
    load_train("BelleGroup/train_2M_CN")
    assert calls[-1] == ("BelleGroup/train_2M_CN", None)


def test_a_revision_that_does_not_exist_names_the_setting(monkeypatch):
    """The real ``datasets.load_dataset``; only the Hub's answer is faked: huggingface_hub raises
    ``RevisionNotFoundError`` for a revision the repository lacks, which datasets re-raises as
    ``DatasetNotFoundError`` (cause chained)."""
    import huggingface_hub
    from huggingface_hub.errors import RevisionNotFoundError

    asked = []

    def no_such_revision(self, repo_id, *args, revision=None, **kw):
        asked.append((repo_id, revision))
        req = httpx.Request("HEAD", f"https://huggingface.co/datasets/{repo_id}/resolve/{revision}/README.md")
        raise RevisionNotFoundError(f"404 Client Error. Revision Not Found for url: {req.url}.",
                                    response=httpx.Response(404, request=req))

    monkeypatch.setattr(huggingface_hub.HfApi, "hf_hub_download", no_such_revision)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with pytest.raises(DataError) as e:
        load_train("BelleGroup/train_2M_CN", revision="no-such-sha")
    assert asked == [("BelleGroup/train_2M_CN", "no-such-sha")]
    msg = str(e.value)
    assert msg.startswith("data.revision: 'no-such-sha' does not exist for the Hugging Face dataset BelleGroup/train_2M_CN")
    assert "huggingface.co/datasets/BelleGroup/train_2M_CN/commits/main" in msg
    with pytest.raises(DataError, match="could not be loaded with datasets.load_dataset"):  # other errors: as before
        load_train("BelleGroup/train_2M_CN")


def test_the_revision_enters_the_data_stage_fingerprint_only(tiny_model_dir, tmp_path):
    from helpers.study.runner import fingerprint, plan

    runs = {}
    for rev in ("aaa", "bbb"):
        cfg = make_config(tiny_model_dir, data={**HUB, "revision": rev})
        runs[rev] = {r.label: fingerprint(cfg, r) for r in plan(cfg, tmp_path)}
    assert runs["aaa"]["data"] != runs["bbb"]["data"]
    assert runs["aaa"]["finetune-4"] == runs["bbb"]["finetune-4"]  # later stages follow through their input files


@pytest.mark.parametrize("data, message", [
    ({"source": "builtin", "revision": "abc"}, "data.revision: has no effect with data.source: builtin"),
    ({"source": "file", "train_files": ["configs/seeds_zh.jsonl"], "eval_file": "e.jsonl", "revision": "abc"},
     "data.revision: has no effect: every data.train_files entry is a local file"),
    ({**HUB, "train_files": ["BelleGroup/train_2M_CN", "BelleGroup/train_1M_CN"], "revision": "abc"},
     "data.revision: pins one Hugging Face dataset, but data.train_files names 2"),
])
def test_a_revision_where_it_cannot_apply_is_a_config_error(tiny_model_dir, data, message):
    with pytest.raises(ValidationError, match=message):
        make_config(tiny_model_dir, data=data)
    make_config(tiny_model_dir, data={**HUB, "revision": "abc"})  # one hub dataset: fine
