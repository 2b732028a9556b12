"""Generators of the writing use cases: generation and brainstorming (checked by constraints:
count, required words, length), rewrite and summarization (checked by the facts kept) and
translation (a small bilingual vocabulary, split between pool and eval by a stable key).

Words and templates come from ``writing.yaml`` beside this module; the entities from ``vocab``.
"""
from __future__ import annotations

import random

from helpers.data.suite.vocab import COLORS, EVENTS, HOBBIES, JOBS, KINDS_OF_THINGS, Item, Vocab, in_split, month_day, split, words

W = words(__file__, "wishes slogan_tails ad_tails place_acts whens companions seasons thanks cn_count extra_kinds "
                    "shops shop_prefix weekend relations gifts goals things passive_vps skills foods book_topics "
                    "t_nouns t_adjs t_nums t_subjects t_places t_acts to_en to_zh sum_instr industries weather sports "
                    "facilities")

EXTRA_KINDS: dict[str, list[str]] = W.extra_kinds | {"职业": JOBS, "颜色": COLORS}
"""Kinds to brainstorm beyond ``KINDS_OF_THINGS``."""
BRAIN_KINDS = split(list(KINDS_OF_THINGS) + list(EXTRA_KINDS))
GOALS = split(W.goals)



def _constraints(output: str, required: list[str], count: int | None = None, unit: str = "items") -> dict:
    n = len("".join(output.split()))
    return {"type": "constraints", "count": count, "unit": unit, "required": required,
            "min_chars": max(2, n // 2), "max_chars": n * 2 + 10}


def _gen_generation(rng: random.Random, v: Vocab, k: dict) -> Item:
    form = rng.randrange(7)
    if form == 0:
        name = v.name(rng)
        w1, w2 = rng.sample(W.wishes, 2)
        instr = rng.choice(["给{n}写一句生日祝福。", "写一句祝{n}生日快乐的话。", "{n}今天过生日，写一句祝福语。"])
        return instr.format(n=name), "", f"祝{name}生日快乐，{w1}，{w2}！", _constraints(
            f"祝{name}生日快乐，{w1}，{w2}！", [name, "生日"])
    if form == 1:
        city, name = v.city(rng), v.name(rng)
        out = f"欢迎来{city}，{rng.choice(W.slogan_tails)}！"
        instr = rng.choice(["{n}想为{c}写一句旅游宣传语，请帮他写一句。", "替{n}给{c}写一句旅游宣传口号。"])
        return instr.format(c=city, n=name), "", out, _constraints(out, [city, "欢迎"])
    if form == 2:
        color, product = rng.choice(COLORS), rng.choice(v.products)
        out = f"{color}{product}，{rng.choice(W.ad_tails)}！"
        instr = rng.choice(["为一款{a}的{p}写一句广告语。", "给{a}{p}想一句广告词。", "写一句推销{a}{p}的广告语。"])
        return instr.format(a=color, p=product), "", out, _constraints(out, [product, color])
    if form == 3:
        place, act = rng.choice(W.place_acts)
        name = v.name(rng)
        out = f"{rng.choice(W.whens)}，{name}和{rng.choice(W.companions)}去{place}{act}。"
        instr = rng.choice(["用“{a}”和“{b}”写一句关于{n}的话。", "以{n}为主角，用“{a}”和“{b}”造一个句子。"])
        return instr.format(a=place, b=act, n=name), "", out, _constraints(out, [place, act, name])
    if form == 4:
        season = rng.choice(list(W.seasons))
        city = v.city(rng)
        d1, d2 = rng.sample(W.seasons[season], 2)
        out = f"{season}的{city}，{d1}。{d2}。"
        instr = rng.choice(["用两句话描写{c}的{s}。", "写两句话，描述{s}的{c}。"])
        return instr.format(c=city, s=season), "", out, _constraints(out, [city, season], 2, "sentences")
    if form == 5:
        event, date, city = rng.choice(EVENTS), month_day(rng), v.city(rng)
        out = f"通知：{city}{event}改到{date}举行，请大家相互转告。"
        instr = rng.choice(["写一句通知：{c}{e}改到{d}举行。", "{c}{e}的时间改成了{d}，写一句通知告诉大家。"])
        return instr.format(c=city, e=event, d=date), "", out, _constraints(out, [event, date, city])
    name = v.name(rng)
    out = f"{name}老师，谢谢您{rng.choice(W.thanks)}，您辛苦了！"
    instr = rng.choice(["替学生给{n}老师写一句感谢的话。", "写一句话感谢{n}老师。"])
    return instr.format(n=name), "", out, _constraints(out, [name, "谢谢"])


def _numbered(items: list[str]) -> str:
    return "\n".join(f"{i}. {x}" for i, x in enumerate(items, 1))


def _gen_brainstorming(rng: random.Random, v: Vocab, k: dict) -> Item:
    b = k["brainstorming"]
    n = rng.randint(b["min_items"], b["max_items"])
    cn = W.cn_count.get(n, str(n))
    form = rng.randrange(5)
    required: list[str] = []
    if form == 0:
        kind = rng.choice(BRAIN_KINDS[v.split])
        items = rng.sample((KINDS_OF_THINGS | EXTRA_KINDS)[kind], n)
        instr = rng.choice(["列出{n}种{k}。", "请说出{n}种{k}。", "举出{n}个{k}的例子。", "写出{n}种常见的{k}。"])
        instr = instr.format(n=cn, k=kind)
    elif form == 1:
        name, city, shop = v.name(rng), v.city(rng), rng.choice(W.shops)
        items = [p + shop for p in rng.sample(W.shop_prefix, n)]
        instr = f"{name}打算在{city}开一家{shop}，请帮忙想{cn}个店名。"
        required = [shop]
    elif form == 2:
        name, city = v.name(rng), v.city(rng)
        items = rng.sample(W.weekend, n)
        instr = rng.choice(["{p}周末在{c}，推荐{n}件可以做的事。", "{p}周末待在{c}，能做些什么？列出{n}项。"])
        instr = instr.format(p=name, c=city, n=cn)
    elif form == 3:
        name, rel = v.name(rng), rng.choice(W.relations)
        items = rng.sample(W.gifts, n)
        instr = rng.choice(["{p}的{r}快过生日了，推荐{n}种礼物。", "{p}想给{r}送生日礼物，给出{n}个建议。"])
        instr = instr.format(p=name, r=rel, n=cn)
    else:
        goal, tips = rng.choice(GOALS[v.split])
        items = rng.sample(tips, n)
        instr = rng.choice(["给想要{g}的人提{n}条建议。", "怎样才能{g}？列出{n}个方法。", "关于{g}，请给出{n}条建议。"])
        instr = instr.format(g=goal, n=cn)
    out = _numbered(items)
    return instr, "", out, _constraints(out, required, n, "items")


def _gen_rewrite(rng: random.Random, v: Vocab, k: dict) -> Item:
    name, form = v.name(rng), rng.randrange(7)
    if form == 0:
        thing, vp = rng.choice(W.things), rng.choice(W.passive_vps)
        instr = rng.choice(["把下面的句子改写成“被”字句。", "请把这句话改成被动句。"])
        src, out, facts = f"{name}把{thing}{vp}。", f"{thing}被{name}{vp}。", [name, thing, "被"]
    elif form == 1:
        instr = rng.choice(["把下面的句子改成否定句。", "请把这句话改为否定的说法。"])
        sub = rng.randrange(3)
        if sub == 0:
            h = rng.choice(HOBBIES)
            src, out, facts = f"{name}喜欢{h}。", f"{name}不喜欢{h}。", [name, h, "不喜欢"]
        elif sub == 1:
            c = v.city(rng)
            src, out, facts = f"{name}去过{c}。", f"{name}没有去过{c}。", [name, c, "没有去过"]
        else:
            s = rng.choice(W.skills)
            src, out, facts = f"{name}会{s}。", f"{name}不会{s}。", [name, s, "不会"]
    elif form == 2:
        c = v.city(rng)
        instr = rng.choice(["把下面的句子改成疑问句。", "请把这句话改写成一般疑问句。"])
        src, out, facts = f"{name}明天要去{c}。", f"{name}明天要去{c}吗？", [name, c, "吗"]
    elif form == 3:
        thing = rng.choice(W.things)
        instr = rng.choice(["把下面的话改得更礼貌一些。", "请用更客气的语气改写这句话。"])
        src, out, facts = f"{name}，把{thing}拿过来。", f"{name}，请把{thing}拿过来，谢谢。", [name, thing, "请"]
    elif form == 4:
        food = rng.choice(W.foods)
        instr = rng.choice(["把下面的口语改成书面语。", "请把这句话改写得更正式一些。"])
        src = f"{name}觉得这家店的{food}特别好吃。"
        out, facts = f"{name}认为这家店的{food}非常美味。", [name, food, "认为", "非常"]
    elif form == 5:
        c, job = v.city(rng), rng.choice(JOBS)
        instr = f"把下面句子里的“我”换成“{name}”。"
        src, out, facts = f"我在{c}当{job}。", f"{name}在{c}当{job}。", [name, c, job]
    else:
        topic = rng.choice(W.book_topics)
        instr = rng.choice(["把下面两句话合并成一句。", "请将这两句话合成一句话。"])
        src = f"{name}买了一本书。这本书是关于{topic}的。"
        out, facts = f"{name}买了一本关于{topic}的书。", [name, topic, "书"]
    return instr, src, out, {"type": "facts", "facts": facts}


def _be(subj_en: str, third: bool) -> str:
    return "am" if subj_en == "I" else ("is" if third else "are")


def _gen_translation(rng: random.Random, v: Vocab, k: dict) -> Item:
    while True:
        form = rng.randrange(4)
        if form == 0:
            (zn, mw, en1, enp), (za, ea), (num, zh_num, en_num) = \
                rng.choice(W.t_nouns), rng.choice(W.t_adjs), rng.choice(W.t_nums)
            zh = f"我有{zh_num}{mw}{za}的{zn}。"
            if num == 1:
                art = "an" if ea[0] in "aeiou" else "a"
                en = f"I have {art} {ea} {en1}."
            else:
                en = f"I have {en_num} {ea} {enp}."
            key = f"0|{zn}|{za}|{num}"
        elif form == 1:
            (zs, es, third), (zn, _, _, enp) = rng.choice(W.t_subjects), rng.choice(W.t_nouns)
            zh, en = f"{zs}喜欢{zn}。", f"{es} {'likes' if third else 'like'} {enp}."
            key = f"1|{zs}|{zn}"
        elif form == 2:
            (zs, es, third), (zp, ep) = rng.choice(W.t_subjects), rng.choice(W.t_places)
            zh, en = f"{zs}在{zp}里。", f"{es} {_be(es, third)} in the {ep}."
            key = f"2|{zs}|{zp}"
        else:
            (zs, es, third), (za, e1, e3) = rng.choice(W.t_subjects), rng.choice(W.t_acts)
            zh, en = f"{zs}每天{za}。", f"{es} {e3 if third else e1} every day."
            key = f"3|{zs}|{za}"
        direction = rng.choice(["en", "zh"])
        if in_split(f"{direction}|{key}", v.split, k):
            break
    if direction == "en":
        return rng.choice(W.to_en), zh, en, {"type": "translation", "target": "en"}
    return rng.choice(W.to_zh), en, zh, {"type": "translation", "target": "zh"}


def _gen_summarization(rng: random.Random, v: Vocab, k: dict) -> Item:
    city, name, form = v.city(rng), v.name(rng), rng.randrange(6)
    if form == 0:
        event, date, n = rng.choice(EVENTS), month_day(rng), rng.randint(2, 60) * 100
        text = f"{date}，{city}举办了{event}。活动吸引了{n}名市民参加，现场气氛热烈。"
        out, facts = f"{city}举办{event}，{n}名市民参加。", [city, event, str(n)]
    elif form == 1:
        ind, p = rng.choice(W.industries), rng.randint(5, 60)
        text = f"{city}一家{ind}公司今年营收增长了{p}%。负责人{name}表示，这主要得益于新产品的推出。"
        out, facts = f"{city}一家{ind}公司营收增长{p}%。", [city, ind, f"{p}%"]
    elif form == 2:
        w, date, lo = rng.choice(W.weather), month_day(rng), rng.randint(-5, 20)
        text = f"气象台预报，{city}{date}将有{w}，气温{lo}到{lo + rng.randint(3, 10)}度。请市民注意出行安全。"
        out, facts = f"{city}{date}将有{w}。", [city, date, w]
    elif form == 3:
        city2, sport = v.city(rng, avoid=(city,)), rng.choice(W.sports)
        a, b, n = rng.randint(2, 9), rng.randint(0, 1), rng.randint(2, 15)
        text = f"在昨晚的{sport}比赛中，{city}队以{a}比{b}战胜了{city2}队。这是{city}队本赛季的第{n}场胜利。"
        out, facts = f"{city}队{a}比{b}战胜{city2}队。", [city, city2, f"{a}比{b}"]
    elif form == 4:
        job, n = rng.choice(JOBS), rng.randint(2, 20)
        text = f"{name}是{city}的一名{job}。{n}年来，{name}每个周末都去社区做志愿服务。"
        out, facts = f"{city}{job}{name}坚持志愿服务{n}年。", [name, job, f"{n}年"]
    else:
        fac, n = rng.choice(W.facilities), rng.randint(2, 90) * 10
        text = f"{city}新建了一座{fac}，占地{n}亩。这座{fac}每天免费向市民开放。"
        out, facts = f"{city}新建的{fac}免费开放。", [city, fac, "免费"]
    return rng.choice(W.sum_instr), text, out, {"type": "facts", "facts": facts}


GENERATORS = {"generation": _gen_generation, "brainstorming": _gen_brainstorming, "rewrite": _gen_rewrite,
              "translation": _gen_translation, "summarization": _gen_summarization}
"""Use case -> the function that draws one item ``(instruction, input, output, check)``."""
