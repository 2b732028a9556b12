"""Generators of the understanding use cases: classification (sentiment, news topic, intent),
extraction (people, cities, dates), open QA (held-out facts) and closed QA (the answer is a span
of the passage).

Words and templates come from ``understanding.yaml`` beside this module; the entities (names,
cities, products...) from ``vocab``. Open QA facts are split between pool and eval one fact at a
time (all phrasings of a fact on the same side).
"""
from __future__ import annotations

import random

from helpers.data.suite.vocab import (
    CITIES,
    CITY_PROVINCE,
    COLORS,
    EVENTS,
    HOBBIES,
    JOBS,
    KINDS_OF_THINGS,
    VEHICLES,
    VENUES,
    Item,
    Vocab,
    month_day,
    split,
    words,
)

W = words(__file__, "positive negative sent_close sent_templates sent_instr topics topic_instr intents intent_instr "
                    "extract_sentences extract_tasks acts countries antonyms books qa_prefix closed_instr")



def _gen_classification(rng: random.Random, v: Vocab, k: dict) -> Item:
    task = rng.randrange(3)
    if task == 0:
        label = rng.choice(["正面", "负面"])
        phrases = W.positive if label == "正面" else W.negative
        x, y = rng.sample(phrases, 2)
        text = rng.choice(W.sent_templates).format(p=rng.choice(v.products), x=x, y=y,
                                                 z=rng.choice(W.sent_close[label]))
        return rng.choice(W.sent_instr), text, label, {"type": "label", "label": label, "labels": ["正面", "负面"]}
    table, instr = (W.topics, W.topic_instr) if task == 1 else (W.intents, W.intent_instr)
    labels = list(table)
    label = rng.choice(labels)
    text = rng.choice(table[label]).format(c=v.city(rng), a=rng.randint(2, 9), b=rng.randint(0, 1),
                                           n=rng.randint(2, 9), h=rng.randint(5, 9))
    return rng.choice(instr), text, label, {"type": "label", "label": label, "labels": labels}


def _gen_extraction(rng: random.Random, v: Vocab, k: dict) -> Item:
    template, has_date, two = rng.choice(W.extract_sentences)
    p = v.name(rng)
    q = v.name(rng, avoid=(p,)) if two else ""
    c, d = v.city(rng), month_day(rng)
    sentence = template.format(p=p, q=q, c=c, d=d, a=rng.choice(W.acts))
    people = [p, q] if two else [p]
    tasks = ["person", "city", "person_city"] + (["date"] if has_date else [])
    task = rng.choice(tasks)
    spans = {"person": people, "city": [c], "date": [d], "person_city": people + [c]}[task]
    return rng.choice(W.extract_tasks[task]), sentence, "、".join(spans), {"type": "spans", "spans": spans}


def _qa_groups() -> list[list[tuple[str, str]]]:
    """One group of (question, answer) phrasings per fact, relation by relation."""
    groups: list[list[tuple[str, str]]] = []

    def add(entities: list[tuple[str, str]], phrasings: tuple[str, ...]) -> None:
        for x, ans in entities:
            groups.append([(q.format(x=x), ans) for q in phrasings])

    add([(c, cap) for c, cap, _ in W.countries if cap], ("{x}的首都是哪座城市？", "{x}的首都是哪里？", "哪座城市是{x}的首都？"))
    add([(c, ct) for c, _, ct in W.countries if ct], ("{x}位于哪个大洲？", "{x}在哪个洲？"))
    for a, b in W.antonyms:  # both directions of a pair stay on the same side of the split
        groups.append([(q.format(x=x), y) for x, y in ((a, b), (b, a))
                       for q in ("“{x}”的反义词是什么？", "与“{x}”意思相反的词是什么？", "“{x}”的反义词是哪个词？")])
    add(W.books, ("《{x}》的作者是谁？", "谁写了《{x}》？"))
    kinds = list(KINDS_OF_THINGS)
    for kind, things in KINDS_OF_THINGS.items():
        for t in things:
            groups.append([(f"{t}属于{a}还是{b}？", kind) for other in kinds if other != kind
                           for a, b in ((kind, other), (other, kind))])
    return groups


def _qa_split() -> dict[str, list[list[tuple[str, str]]]]:
    out = split(_qa_groups())
    for side in ("pool", "eval"):  # city -> province facts follow the split of CITIES
        out[side] += [[(q.format(x=c), p) for q in ("{x}属于哪个省级行政区？", "{x}是哪个省份的城市？", "{x}位于哪个省？")]
                      for c, p in CITY_PROVINCE if p and c in CITIES[side]]
    return out


_QA = _qa_split()
"""split -> fact groups of open QA."""


def _gen_open_qa(rng: random.Random, v: Vocab, k: dict) -> Item:
    group = rng.choice(_QA[v.split])
    q, a = rng.choice(group)
    return rng.choice(W.qa_prefix) + q, "", a, {"type": "text"}


def _gen_closed_qa(rng: random.Random, v: Vocab, k: dict) -> Item:
    name, city, form = v.name(rng), v.city(rng), rng.randrange(4)
    if form == 0:
        job, age, hobby = rng.choice(JOBS), rng.randint(20, 65), rng.choice(HOBBIES)
        passage = f"{name}是一名{job}，住在{city}，今年{age}岁，平时喜欢{hobby}。"
        qa = [(f"{name}的职业是什么？", job), (f"{name}住在哪座城市？", city),
              (f"{name}今年多大？", f"{age}岁"), (f"{name}平时喜欢做什么？", hobby)]
    elif form == 1:
        date, venue, event, n = month_day(rng), rng.choice(VENUES), rng.choice(EVENTS), rng.randint(2, 30) * 50
        passage = f"{date}，{name}将在{city}{venue}举办{event}，预计有{n}人到场。"
        qa = [(f"{event}在哪座城市举办？", city), (f"{event}什么时候举办？", date), ("预计有多少人到场？", f"{n}人"),
              (f"谁将举办{event}？", name), (f"{event}在什么场馆举办？", venue)]
    elif form == 2:
        color, product, price, n = rng.choice(COLORS), rng.choice(v.products), rng.randint(3, 99) * 10, rng.randint(5, 80)
        passage = f"{name}在{city}开的店里卖一款{color}的{product}，售价{price}元，每天能卖出{n}件。"
        qa = [(f"这款{product}是什么颜色？", color), (f"这款{product}售价多少？", f"{price}元"),
              ("这家店开在哪座城市？", city), ("店主是谁？", name), ("每天能卖出多少件？", f"{n}件")]
    else:
        city2, date, vehicle, h = v.city(rng, avoid=(city,)), month_day(rng), rng.choice(VEHICLES), rng.randint(2, 12)
        passage = f"{name}{date}从{city}坐{vehicle}去{city2}，路上花了{h}个小时。"
        qa = [(f"{name}从哪里出发？", city), (f"{name}要去哪里？", city2), (f"{name}坐什么去？", vehicle),
              ("路上花了多长时间？", f"{h}个小时"), (f"{name}哪天出发？", date)]
    q, a = rng.choice(qa)
    return (rng.choice(W.closed_instr), f"短文：{passage}\n问题：{q}", a,
            {"type": "answer_in_passage", "answer": a})


GENERATORS = {"classification": _gen_classification, "extraction": _gen_extraction, "open_qa": _gen_open_qa,
              "closed_qa": _gen_closed_qa}
"""Use case -> the function that draws one item ``(instruction, input, output, check)``."""
