"""The small study the LLM-judge tests judge: eight items of eight use cases, one answer to each, and
the config whose judge is the fake server (tests/fake_openai.py) with tiny backoffs."""
from __future__ import annotations

from fake_openai import ENV, FakeOpenAI

from helpers.study.config import StudyConfig

ITEMS = [
    {"id": "m1", "category": "math", "question": "计算：12 + 30 = ?", "reference": "42"},
    {"id": "m2", "category": "math", "question": "计算：7 × 8 = ?", "reference": "56"},
    {"id": "c1", "category": "classification", "question": "这句话的情感是正面还是负面？“服务很好。”", "reference": "正面"},
    {"id": "t1", "category": "translation", "question": "把“我喜欢猫”翻译成英文。", "reference": "I like cats."},
    {"id": "g1", "category": "generation", "question": "写两句关于秋天的话。", "reference": "秋风起，落叶黄。REF-G1-SECRET-OUT"},
    {"id": "b1", "category": "brainstorming", "question": "给出三个周末活动的建议。", "reference": "爬山、看书、做饭"},
    {"id": "r1", "category": "rewrite", "question": "把“他很高兴”改写得更正式。", "reference": "他感到十分愉悦。"},
    {"id": "s1", "category": "summarization", "question": "概括：小王今天去了北京，他在那里开会。", "reference": "小王去北京开会。"},
]
ANSWERS = {"m1": "42", "m2": "答案是54", "c1": "正面", "t1": "I like cat.", "g1": "秋天来了。树叶黄了。",
           "b1": "1. 爬山\n2. 看电影\n3. 做饭", "r1": "他十分高兴。", "s1": "小王去北京。"}


def make_cfg(srv: FakeOpenAI, **judge) -> StudyConfig:
    j = {"kind": "openai", "model": "fake-judge", "base_url": srv.base_url, "api_key_env": ENV, "runs": 3,
         "concurrency": 4, "max_retries": 3, "timeout_s": 5, "backoff_base_s": 0.001, "backoff_max_s": 0.01,
         "parse_retries": 1, "price_per_1k_input": 0.5, "price_per_1k_output": 1.5}
    j.update(judge)
    return StudyConfig.model_validate({"study": "unit", "scales": [4], "data": {"pool_size": 10}, "judge": j})
