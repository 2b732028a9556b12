"""Converting the embedded GGUF model: one parse of the file, the same fp32 copy as loading it through transformers."""
import pytest

from helpers.study import models


def test_within_the_block_one_gguf_file_is_parsed_once(monkeypatch, tmp_path):
    import gguf

    parsed = []

    class Reader:
        def __init__(self, path, mode="r"):
            parsed.append((str(path), mode))

    monkeypatch.setattr(gguf, "GGUFReader", Reader)
    with models._gguf_parsed_once():
        first, again, other = (gguf.GGUFReader(tmp_path / n) for n in ("a.gguf", "a.gguf", "b.gguf"))
    assert first is again and first is not other
    assert parsed == [(str(tmp_path / "a.gguf"), "r"), (str(tmp_path / "b.gguf"), "r")]
    assert gguf.GGUFReader is Reader  # put back after the block
    assert gguf.GGUFReader(tmp_path / "a.gguf") is not first


@pytest.mark.slow  # a whole conversion (about half a minute)
def test_the_conversion_parses_the_file_once_and_writes_the_weights_transformers_loads(monkeypatch, tmp_path, embedded_dir):
    import gguf
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    real, parsed = gguf.GGUFReader, []

    def counting(path, *args, **kwargs):
        parsed.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", counting)
    monkeypatch.setenv("STUDY_CACHE", str(tmp_path))
    target = models.embedded_model_dir()
    assert target.parent == tmp_path and len(parsed) == 1
    ours = load_file(target / "model.safetensors")
    assert all(not t.is_meta for t in ours.values())
    reference = AutoModelForCausalLM.from_pretrained(embedded_dir, dtype=torch.float32).state_dict()
    assert set(ours) <= set(reference)
    assert all(torch.equal(ours[k], reference[k]) for k in ours)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (target / name).read_bytes() == (embedded_dir / name).read_bytes(), name


def test_processes_asking_at_once_convert_once(monkeypatch, tmp_path):
    """Two asking together (threads here hold separate OS file locks, as processes do): one converts, one waits."""
    import threading
    import time

    converted = []

    def convert(pkg, target):
        converted.append(target)
        time.sleep(0.5)
        target.mkdir()
        (target / "done.json").write_text("{}")

    monkeypatch.setattr(models, "_convert", convert)
    monkeypatch.setenv("STUDY_CACHE", str(tmp_path))
    got = []
    threads = [threading.Thread(target=lambda: got.append(models.embedded_model_dir())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(converted) == 1 and got == converted * 2
