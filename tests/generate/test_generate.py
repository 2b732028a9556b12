import pytest
from builders import make_config

from helpers.generate.hf import plan_batches
from helpers.generate.stage import generate_answers
from helpers.study.files import read_json, read_jsonl, write_json, write_jsonl
from helpers.study.models import bf16_supported, load_tokenizer
from helpers.study.prompt import cut_at_stop

ITEMS = [{"id": f"e{i}", "category": cat, "question": "问题" * (i + 1), "reference": "答"}
         for i, cat in enumerate(["math", "code", "math", "rewrite", "code", "math", "translation"])]


def test_cut_at_stop():
    assert cut_at_stop(" 答案：3\nHuman: 再来一个") == "答案：3"
    assert cut_at_stop("答案：3\n\n") == "答案：3"


def test_batches_share_a_token_budget_and_respect_the_size(tiny_model_dir):
    cfg = make_config(tiny_model_dir, generate={"batch_size": 2, "max_new_tokens": {"default": 5, "code": 9}})
    batches = plan_batches(ITEMS, load_tokenizer(str(tiny_model_dir)), cfg)
    assert sorted(it["id"] for b in batches for it in b) == sorted(it["id"] for it in ITEMS)
    for b in batches:
        assert len(b) <= 2
        assert len({cfg.generate.tokens_for(it["category"]) for it in b}) == 1


@pytest.mark.slow
def test_generate_writes_one_answer_per_item_and_resumes(tmp_path, tiny_model_dir):
    cfg = make_config(tiny_model_dir, generate={"batch_size": 3, "max_new_tokens": {"default": 4}})
    write_jsonl(tmp_path / "eval.jsonl", ITEMS)
    path = generate_answers(cfg, "base", tmp_path)
    full = read_jsonl(path)
    assert sorted(a["id"] for a in full) == sorted(it["id"] for it in ITEMS)
    for a in full:
        assert set(a) >= {"id", "category", "answer", "new_tokens", "model"}
        assert a["model"] == "base" and 0 < a["new_tokens"] <= 4
    note = read_json(tmp_path / "answers" / "base.engine.json")
    assert note["backend"] == "hf" and note["engine"].startswith("transformers ")
    assert note["dtype"] == ("bfloat16" if bf16_supported() else "float32")  # generate.dtype: auto

    # a run killed after two answers, mid-way through writing the third line
    kept = full[:2]
    write_jsonl(path, kept)
    with open(path, "a") as f:
        f.write('{"id": "e9", "categ')
    with pytest.warns(UserWarning, match="torn last line"):
        generate_answers(cfg, "base", tmp_path)
    resumed = read_jsonl(path)
    assert resumed[:2] == kept
    assert sorted(a["id"] for a in resumed) == sorted(it["id"] for it in ITEMS)
    by_id = {a["id"]: a["answer"] for a in full}
    assert all(by_id[a["id"]] == a["answer"] for a in resumed)  # greedy: same answers after resume


def test_generate_without_a_trained_model_says_so(tmp_path, tiny_model_dir):
    cfg = make_config(tiny_model_dir)
    write_jsonl(tmp_path / "eval.jsonl", ITEMS)
    with pytest.raises(FileNotFoundError, match="run the finetune stage first"):
        generate_answers(cfg, "8", tmp_path)


def test_answers_go_to_the_gpu_in_bf16_and_to_the_cpu_in_bf16_only_where_it_is_native(monkeypatch):
    import torch

    import helpers.study.models as models
    from helpers.study.models import generation_placement

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(models, "bf16_supported", lambda: False)
    assert generation_placement() == {}  # a CPU without native bf16: fp32 as before
    monkeypatch.setattr(models, "bf16_supported", lambda: True)
    assert generation_placement() == {"dtype": torch.bfloat16}
    assert generation_placement("float32") == {"dtype": torch.float32}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert generation_placement() == {"dtype": torch.bfloat16, "device_map": "auto"}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert generation_placement() == {"dtype": torch.float16, "device_map": "auto"}
    assert generation_placement("float32") == {"dtype": torch.float32, "device_map": "auto"}


@pytest.mark.slow
def test_the_hf_dtype_reaches_the_model_and_its_note(tmp_path, tiny_model_dir):
    cfg = make_config(tiny_model_dir, generate={"batch_size": 3, "max_new_tokens": {"default": 4}, "dtype": "bfloat16"})
    write_jsonl(tmp_path / "eval.jsonl", ITEMS)
    generate_answers(cfg, "base", tmp_path)
    assert read_json(tmp_path / "answers" / "base.engine.json")["dtype"] == "bfloat16"


def test_a_merged_lora_model_projects_a_contiguous_last_position(tmp_path, tiny_model_dir):
    """The output projection of a merged LoRA model (weights that do not require grad) must see a contiguous
    input: a strided one sends torch's bf16 CPU matmul through a copy of the weight per row (16x slower)."""
    from peft import LoraConfig, get_peft_model

    from helpers.generate.hf import answer_batch
    from helpers.study.models import load_causal_lm, load_for_generation

    cfg = make_config(tiny_model_dir, generate={"batch_size": 3, "max_new_tokens": {"default": 4}, "dtype": "bfloat16"})
    peft_model = get_peft_model(load_causal_lm(str(tiny_model_dir)), LoraConfig(r=4, target_modules="all-linear"))
    peft_model.save_pretrained(tmp_path / "models" / "8")
    model, tok = load_for_generation(cfg, "8", tmp_path)
    tok.padding_side = "left"
    head = model.get_output_embeddings()
    assert not head.weight.requires_grad  # merge_and_unload leaves the weights frozen: the case that was slow
    seen = []
    head.register_forward_hook(lambda _m, args, _out: seen.append((tuple(args[0].shape), args[0].is_contiguous())))
    answer_batch(model, tok, ITEMS[:3], cfg)
    assert seen and seen[0][0][0] == 3 and all(contiguous for _, contiguous in seen)


def test_generate_dtype_with_another_backend_is_an_error(tiny_model_dir):
    with pytest.raises(ValueError, match="generate.dtype: has no effect with generate.backend: vllm"):
        make_config(tiny_model_dir, generate={"backend": "vllm", "dtype": "bfloat16", "max_new_tokens": {"default": 4}})
    make_config(tiny_model_dir, generate={"backend": "vllm", "dtype": "auto", "max_new_tokens": {"default": 4}})  # the default


@pytest.mark.slow
def test_answers_made_under_other_settings_or_weights_are_set_aside_not_resumed(tmp_path, tiny_model_dir):
    cfg = make_config(tiny_model_dir, generate={"batch_size": 3, "max_new_tokens": {"default": 4}})
    write_jsonl(tmp_path / "eval.jsonl", ITEMS)
    path = generate_answers(cfg, "base", tmp_path)
    first = path.read_text()
    key = read_json(tmp_path / "answers" / "base.engine.json")["answers_key"]
    generate_answers(cfg, "base", tmp_path)  # same settings: nothing to do, nothing moved
    assert path.read_text() == first and not (tmp_path / "answers" / "replaced").exists()

    longer = make_config(tiny_model_dir, generate={"batch_size": 3, "max_new_tokens": {"default": 7}})
    generate_answers(longer, "base", tmp_path)
    kept = sorted((tmp_path / "answers" / "replaced").glob("base.*.jsonl"))
    assert len(kept) == 1 and kept[0].read_text() == first  # the old answers are kept, not resumed
    assert read_json(kept[0].with_suffix(".engine.json"))["answers_key"] == key
    new = read_jsonl(path)
    assert len(new) == len(ITEMS) and max(r["new_tokens"] for r in new) > 4
    assert read_json(tmp_path / "answers" / "base.engine.json")["answers_key"] != key

    # a retrained model (another training run key in its summary) gets fresh answers too
    from helpers.generate.backend import answers_key

    summary = tmp_path / "models" / "4" / "train_summary.json"
    write_json(summary, {"run_key": "run-1"})
    k1 = answers_key(longer, "4", tmp_path)
    write_json(summary, {"run_key": "run-2"})
    assert answers_key(longer, "4", tmp_path) != k1
    assert answers_key(longer, "base", tmp_path) == answers_key(longer, "base", tmp_path / "elsewhere")


def _tiny_batch(model_dir):
    from builders import spread_tiny_model

    from helpers.study.prompt import format_prompt

    model, tok = spread_tiny_model(model_dir)
    prompts = [format_prompt(q) for q in ["写一首诗", "把这句话翻译成英文：我喜欢猫。", "计算12乘以7", "中国的首都是哪座城市？",
                                          "列出三种水果", "用一句话概括这段文字的主要内容，不超过二十个字。"]]
    return model, tok, tok(prompts, return_tensors="pt", padding=True)


def _generate(model, tok, enc, max_new, **stop):
    out = model.generate(**enc, max_new_tokens=max_new, do_sample=False, temperature=None, top_p=None, top_k=None,
                         pad_token_id=tok.pad_token_id, **stop)
    return [[t for t in row.tolist() if t != tok.pad_token_id] for row in out[:, enc["input_ids"].shape[1]:]]


@pytest.mark.parametrize("arch", ["tiny_model_dir", "tiny_bloom_dir"])
def test_greedy_decode_drops_ended_rows_and_gives_generates_tokens_for_eos(arch, request):
    from helpers.generate.greedy import greedy_decode

    model, tok, enc = _tiny_batch(request.getfixturevalue(arch))
    full = greedy_decode(model, tok, enc, 12, "\x00never", set())
    assert all(len(row) == 12 for row in full)
    # an "EOS" that some rows reach at different steps and others never do
    counts = {t: sum(t in row[:-1] for row in full) for row in full for t in row[:-1]}
    eos = next(t for t, c in sorted(counts.items()) if 0 < c < len(full) and t != tok.pad_token_id)
    ours = greedy_decode(model, tok, enc, 12, "\x00never", {eos})
    assert len({len(row) for row in ours}) > 1 and any(len(row) == 12 for row in ours)  # some ended early
    assert ours == _generate(model, tok, enc, 12, eos_token_id=eos)


def test_greedy_decode_ends_a_row_at_the_first_token_that_completes_the_stop_string(tiny_model_dir):
    """Each row is the undisturbed decode cut at the first token whose answer holds the stop string: rows that
    end early leave the batch and the KV cache without changing the others."""
    from helpers.generate.greedy import greedy_decode

    model, tok, enc = _tiny_batch(tiny_model_dir)
    full = greedy_decode(model, tok, enc, 12, "\x00never", set())
    stop = tok.decode(full[0][3:5])  # a piece of the first answer's middle
    assert stop.strip()

    def cut(row):
        return next((row[:k] for k in range(1, len(row) + 1) if stop in tok.decode(row[:k])), row)

    ours = greedy_decode(model, tok, enc, 12, stop, set())
    assert ours == [cut(row) for row in full]
    assert len(ours[0]) <= 5 and any(len(row) == 12 for row in ours)  # one ended early, another ran on
