"""The built-in Chinese instruction suite: 12 use cases, generated from templates.

``build_suite(seed, pool_size, eval_per_category)`` returns ``(pool, eval)``:

- pool records ``{id, instruction, input, output, category}`` (``input`` may be ""),
  ids ``pool-000000``, ``pool-000001``, ...;
- eval records ``{id, category, question, reference, check}``, ids
  ``eval-<category>-0000``..., ``eval_per_category`` per category in ``CATEGORIES``
  order; ``question`` is ``helpers.study.prompt.question(instruction, input)``.

Everything is procedural and deterministic: every category draws from its own
``random.Random(f"{seed}|{category}|{split}")`` (a string seed is hashed with SHA-512
by ``random``, so no dependence on ``hash()`` or on process state).

Balance and stability of the pool
    Item ``i`` of the pool belongs to ``CATEGORIES[i % 12]`` (round robin), so the
    counts per category differ by at most one. Each category is one stream of
    distinct items (distinct ``instruction + input``), so ``build_suite(s, n, e)``'s
    pool is a prefix of ``build_suite(s, m, e)``'s for ``n < m``, and the eval set
    does not depend on ``pool_size`` at all. Capacity: every category can give
    more than 10,000 distinct pool items (translation ~10,200 and open QA ~12,700 are
    the smallest; over 120,000 in all); asking for more than a category can give
    raises ``ValueError`` naming the category.

Eval is disjoint from the pool by construction
    Entity vocabularies (person surnames, cities, products, kinds, goals, facts, ...)
    are split: every fifth entry (index % 5 == 2) is held out for eval. Surnames are
    split as whole sets (eval names use surnames such as 欧阳, 龚, 谭 that never occur
    in pool text). Categories without a natural entity (math expressions, code
    tasks, translation sentences) are split by a stable key: ``zlib.crc32(key) % 100
    < 20`` goes to eval, the rest to the pool. Templates are shared, so eval tests
    new content in a familiar format. ``build_suite`` also verifies that no eval
    question occurs in the pool and raises if one did.

Difficulty knobs
    ``DEFAULTS`` (module level) records them: math digits, steps and operators; cot
    chain length and number sizes; brainstorming list length. ``build_suite(...,
    knobs={"math": {"digits": 3}})`` overrides any of them.

Learnability spectrum (what a 270M model should show when trained on more data)
    copy/format tasks learnable from a few hundred examples: extraction (copy the
    person / city / date span), classification (fixed label sets named in the
    instruction), closed QA (answer is a span of the passage), rewrite, summarization
    (drop the second sentence, keep the facts), translation (small bilingual
    vocabulary); hard ones: math (multi-digit, two steps, precedence), cot
    (multi-step word problems), code (tiny Python functions checked by tests); open QA
    needs world knowledge about held-out facts.

Checks (the ``check`` dict of eval items, scored by ``helpers.judge.offline``)
    - math, cot: ``{"type": "number", "answer": 82}``; the reference ends with it;
    - code: ``{"type": "python_tests", "entry": "add_5", "tests": ["assert add_5(1) == 6", ...]}``;
    - classification: ``{"type": "label", "label": "正面", "labels": ["正面", "负面"]}``;
    - extraction: ``{"type": "spans", "spans": ["张伟", "杭州"]}`` (reference joins them with 、);
    - closed_qa: ``{"type": "answer_in_passage", "answer": "杭州"}`` (a substring of the passage);
    - open_qa: ``{"type": "text"}`` (the reference is the bare answer);
    - translation: ``{"type": "translation", "target": "en" | "zh"}``;
    - generation, brainstorming: ``{"type": "constraints", "count": 3 | None,
      "unit": "items" | "sentences", "required": [...], "min_chars": int, "max_chars": int}``;
    - rewrite, summarization: ``{"type": "facts", "facts": [...]}``.

All vocabularies and sentences here were written for this project.
"""
from __future__ import annotations

import copy
import random
import zlib
from typing import Callable, Iterator
from helpers.study.categories import CATEGORIES
from helpers.study.prompt import question as make_question


DEFAULTS: dict = {
    "heldout_percent": 20,       # share of key-split items (math, code, translation) held out for eval
    "max_tries": 5000,           # consecutive duplicate draws before a category counts as exhausted
    "math": {"digits": 2, "min_steps": 1, "max_steps": 2, "ops": "+-×", "small_multiplier": True},
    "cot": {"min_chain": 2, "max_chain": 3, "max_start": 20, "max_operand": 9},
    "brainstorming": {"min_items": 2, "max_items": 4},
}
"""Difficulty knobs and sampling settings; ``build_suite(knobs=...)`` overrides them."""


def _w(text: str) -> list[str]:
    return text.split()


def _split(seq: list) -> dict[str, list]:
    return {"pool": [x for i, x in enumerate(seq) if i % 5 != 2],
            "eval": [x for i, x in enumerate(seq) if i % 5 == 2]}


SURNAMES = {
    "pool": _w("王 李 张 刘 陈 杨 赵 黄 周 吴 徐 孙 胡 朱 郭 何 林 罗 郑 梁 谢 宋 唐 许 韩 冯 邓 曹 "
               "彭 曾 肖 董 潘 袁 蔡 余 杜 叶 程 魏 苏 吕 丁 任 沈 姚 卢 姜 崔 钟 陆 汪 范 贾 夏 韦 "
               "邹 孟 熊 秦 段 侯 陶 顾 毛 郝 钱 严 戴 孔"),
    "eval": _w("欧阳 诸葛 上官 慕容 令狐 皇甫 龚 闫 邵 覃 薛 廖 谭 蒋"),
}

GIVEN = _w("伟 芳 娜 敏 静 丽 强 磊 洋 勇 艳 杰 娟 涛 明 超 霞 刚 军 玲 斌 辉 鹏 琳 婷 倩 欣 宇 浩 晨 "
           "雪 颖 凯 悦 雯 子涵 欣怡 浩然 梓轩 雨桐 思远 佳琪 宇航 嘉怡 俊杰 晨曦 一鸣 若曦 天佑 "
           "志强 建国 秀兰 海燕 春梅 晓光 文博 诗涵 子墨 明轩 雅琴 立新 振华 家豪 梦瑶 心怡")

CITY_PROVINCE = [  # (city, province); "" for the four municipalities
    ("北京", ""), ("上海", ""), ("天津", ""), ("重庆", ""),
    ("杭州", "浙江"), ("宁波", "浙江"), ("温州", "浙江"), ("绍兴", "浙江"), ("嘉兴", "浙江"),
    ("湖州", "浙江"), ("金华", "浙江"), ("台州", "浙江"),
    ("南京", "江苏"), ("苏州", "江苏"), ("无锡", "江苏"), ("常州", "江苏"), ("扬州", "江苏"),
    ("徐州", "江苏"), ("南通", "江苏"), ("镇江", "江苏"),
    ("广州", "广东"), ("深圳", "广东"), ("佛山", "广东"), ("东莞", "广东"), ("珠海", "广东"),
    ("汕头", "广东"), ("惠州", "广东"), ("湛江", "广东"),
    ("成都", "四川"), ("绵阳", "四川"), ("乐山", "四川"), ("宜宾", "四川"), ("南充", "四川"),
    ("武汉", "湖北"), ("宜昌", "湖北"), ("襄阳", "湖北"), ("荆州", "湖北"),
    ("长沙", "湖南"), ("株洲", "湖南"), ("岳阳", "湖南"), ("衡阳", "湖南"), ("常德", "湖南"),
    ("济南", "山东"), ("青岛", "山东"), ("烟台", "山东"), ("潍坊", "山东"), ("威海", "山东"),
    ("临沂", "山东"), ("淄博", "山东"),
    ("郑州", "河南"), ("洛阳", "河南"), ("开封", "河南"), ("南阳", "河南"), ("新乡", "河南"),
    ("石家庄", "河北"), ("保定", "河北"), ("唐山", "河北"), ("邯郸", "河北"), ("秦皇岛", "河北"),
    ("太原", "山西"), ("大同", "山西"),
    ("西安", "陕西"), ("宝鸡", "陕西"), ("延安", "陕西"), ("咸阳", "陕西"),
    ("兰州", "甘肃"), ("天水", "甘肃"),
    ("沈阳", "辽宁"), ("大连", "辽宁"), ("鞍山", "辽宁"),
    ("长春", "吉林"),
    ("哈尔滨", "黑龙江"), ("齐齐哈尔", "黑龙江"), ("大庆", "黑龙江"),
    ("合肥", "安徽"), ("芜湖", "安徽"), ("安庆", "安徽"),
    ("福州", "福建"), ("厦门", "福建"), ("泉州", "福建"), ("漳州", "福建"),
    ("南昌", "江西"), ("九江", "江西"), ("赣州", "江西"), ("景德镇", "江西"),
    ("昆明", "云南"), ("大理", "云南"), ("丽江", "云南"),
    ("贵阳", "贵州"), ("遵义", "贵州"),
    ("南宁", "广西"), ("桂林", "广西"), ("柳州", "广西"), ("北海", "广西"),
    ("海口", "海南"), ("三亚", "海南"),
    ("呼和浩特", "内蒙古"), ("包头", "内蒙古"),
    ("银川", "宁夏"), ("西宁", "青海"), ("乌鲁木齐", "新疆"), ("拉萨", "西藏"),
]

CITIES = _split([c for c, _ in CITY_PROVINCE])

PRODUCTS = _split(_w(
    "保温杯 台灯 耳机 背包 雨伞 键盘 鼠标 电饭锅 吹风机 运动鞋 手表 行李箱 电风扇 蓝牙音箱 充电宝 "
    "书桌 枕头 水壶 围巾 毛衣 羽绒服 榨汁机 微波炉 烤箱 空气净化器 加湿器 吸尘器 扫地机器人 洗衣机 "
    "冰箱 平板电脑 笔记本电脑 相机 显示器 路由器 打印机 太阳镜 钱包 沙发 床垫 窗帘 拖鞋 帐篷 滑板 "
    "瑜伽垫 电热毯 咖啡机 录音笔 望远镜 投影仪"))

JOBS = _w("医生 教师 工程师 律师 厨师 司机 护士 会计 记者 设计师 程序员 警察 画家 歌手 农民 "
          "飞行员 摄影师 翻译 导游 销售员 建筑师 消防员 邮递员 理发师 演员 店主 快递员 科学家")

HOBBIES = _w("爬山 游泳 下棋 钓鱼 画画 唱歌 跑步 看电影 弹吉他 养花 摄影 读小说 打篮球 踢足球 "
             "做饭 旅行 跳舞 写书法 骑自行车 打乒乓球 放风筝 拼图 弹钢琴 练瑜伽")

VENUES = _w("体育馆 会展中心 图书馆 大剧院 博物馆 文化宫 音乐厅 科技馆 美术馆 市民广场")

EVENTS = _w("读书会 音乐会 画展 招聘会 运动会 讲座 发布会 年会 书法展 美食节 灯会 摄影展 "
            "科普周 马拉松 合唱比赛 花卉展")

COLORS = _w("红色 白色 黑色 蓝色 绿色 黄色 灰色 粉色 紫色 橙色 银色 金色 棕色")

VEHICLES = _w("高铁 飞机 大巴 轮船 火车 汽车 动车 长途客车")

ACTS = _w("参加了一场读书会 开了一家面馆 看了一场篮球赛 见到了多年未见的老同学 完成了第一次马拉松 "
          "举办了个人画展 做了一场关于环保的演讲 买下了一间小书店 拍了一组风景照片 参加了志愿者活动 "
          "签下了一份工作合同 参观了一座老房子 学会了做蛋糕 报名了游泳课")

CN_COUNT = {2: "两", 3: "三", 4: "四", 5: "五"}


def _date(rng: random.Random) -> str:
    return f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日"


class _Vocab:
    """The entity vocabularies of one split."""

    def __init__(self, split: str):
        self.split = split
        self.surnames = SURNAMES[split]
        self.cities = CITIES[split]
        self.products = PRODUCTS[split]

    def name(self, rng: random.Random, avoid: tuple = ()) -> str:
        while True:
            n = rng.choice(self.surnames) + rng.choice(GIVEN)
            if n not in avoid:
                return n

    def city(self, rng: random.Random, avoid: tuple = ()) -> str:
        while True:
            c = rng.choice(self.cities)
            if c not in avoid:
                return c


def _held_out(key: str, percent: int) -> bool:
    return zlib.crc32(key.encode("utf-8")) % 100 < percent


def _in_split(key: str, split: str, k: dict) -> bool:
    return _held_out(key, k["heldout_percent"]) == (split == "eval")


Item = tuple[str, str, str, dict]  # instruction, input, output, check

MATH_SYMBOLIC = ["计算：{e}", "{e}等于多少？", "请计算{e}的值。", "求{e}的结果。", "口算：{e}=？",
                 "算一算{e}是多少。"]

MATH_WORDS = ["{w}，结果是多少？", "请算出{w}的结果。"]

_OP_WORD = {"+": "加上", "-": "减去"}


def _gen_math(rng: random.Random, v: _Vocab, k: dict) -> Item:
    m = k["math"]
    if not m["ops"] or set(m["ops"]) - set("+-×"):
        raise ValueError(f"math ops must be drawn from '+-×', got {m['ops']!r}")
    lo, hi = 10 ** (m["digits"] - 1), 10 ** m["digits"] - 1
    lo = max(lo, 2)
    while True:
        steps = rng.randint(m["min_steps"], m["max_steps"])
        nums, ops = [rng.randint(lo, hi)], []
        for _ in range(steps):
            op = rng.choice(m["ops"])
            small = op == "×" and m["small_multiplier"]
            nums.append(rng.randint(2, 9) if small else rng.randint(lo, hi))
            ops.append(op)
        expr = str(nums[0]) + "".join(o + str(n) for o, n in zip(ops, nums[1:]))
        value = _eval_int(nums, ops)
        if value < 0 or not _in_split(expr, v.split, k):
            continue
        if set(ops) <= {"+", "-"} and rng.random() < 0.25:
            words = str(nums[0]) + "".join(("，再" if i else "") + _OP_WORD[o] + str(n)
                                           for i, (o, n) in enumerate(zip(ops, nums[1:])))
            instruction = rng.choice(MATH_WORDS).format(w=words)
        else:
            instruction = rng.choice(MATH_SYMBOLIC).format(e=expr)
        return instruction, "", f"{expr}={value}", {"type": "number", "answer": value}


def _eval_int(nums: list[int], ops: list[str]) -> int:
    """Usual precedence: × before + and -."""
    terms, signs = [nums[0]], []
    for op, n in zip(ops, nums[1:]):
        if op == "×":
            terms[-1] *= n
        else:
            terms.append(n)
            signs.append(op)
    total = terms[0]
    for s, t in zip(signs, terms[1:]):
        total = total + t if s == "+" else total - t
    return total


COT_INSTR = ["一步一步计算：", "解应用题，写出过程：", "分步计算并给出答案。", "列式计算："]

COT_OBJECTS = [("个", "苹果"), ("个", "橘子"), ("个", "鸡蛋"), ("个", "气球"), ("个", "面包"),
               ("个", "桃子"), ("支", "铅笔"), ("本", "故事书"), ("张", "贴纸"), ("颗", "糖果"),
               ("块", "饼干"), ("个", "玩具车"), ("朵", "小红花"), ("张", "明信片")]

COT_ADD = ["又买了{n}{mw}", "妈妈又给了{n}{mw}", "朋友送来{n}{mw}", "后来又得到了{n}{mw}"]

COT_SUB = ["吃掉了{n}{mw}", "送给同学{n}{mw}", "弄丢了{n}{mw}", "分给弟弟{n}{mw}"]

COT_MUL = ["后来数量变成了原来的{n}倍"]

COT_ITEMS = [("本", "笔记本"), ("支", "钢笔"), ("个", "面包"), ("条", "毛巾"), ("个", "杯子"),
             ("张", "电影票"), ("盒", "牛奶"), ("把", "尺子")]


def _fresh(rng: random.Random, options: list[str], used: list[str]) -> str:
    """A clause template whose wording (before its number) is not used yet, if any is left."""
    left = [o for o in options if not any(u.startswith(o.split("{")[0]) for u in used)]
    return rng.choice(left or options)


def _cot_chain(rng, v, k) -> tuple[str, str, int]:
    c = k["cot"]
    name = v.name(rng)
    mw, obj = rng.choice(COT_OBJECTS)
    start = cur = rng.randint(3, c["max_start"])
    clauses, steps = [], []
    for _ in range(rng.randint(c["min_chain"], c["max_chain"])):
        kind = rng.choice("++--×") if cur <= 15 else rng.choice("++--")
        if kind == "-" and cur < 3:
            kind = "+"
        if kind == "+":
            n = rng.randint(2, c["max_operand"])
            clauses.append(_fresh(rng, COT_ADD, clauses).format(n=n, mw=mw))
            new = cur + n
        elif kind == "-":
            n = rng.randint(1, min(cur - 1, c["max_operand"]))
            clauses.append(_fresh(rng, COT_SUB, clauses).format(n=n, mw=mw))
            new = cur - n
        else:
            n = rng.randint(2, 3)
            clauses.append(COT_MUL[0].format(n=n))
            new = cur * n
        steps.append(f"{cur}{kind}{n}={new}")
        cur = new
    text = f"{name}有{start}{mw}{obj}，{'，'.join(clauses)}。{name}现在有多少{mw}{obj}？"
    return text, "，".join(steps), cur


def _cot_fixed(rng, v, k) -> tuple[str, str, int]:
    name = v.name(rng)
    form = rng.randrange(5)
    if form == 0:
        mw, item = rng.choice(COT_ITEMS)
        p, q = rng.randint(2, 9), rng.randint(2, 6)
        cost = p * q
        paid = next(x for x in (10, 20, 50, 100) if x > cost)
        text = f"{name}买了{q}{mw}{item}，每{mw}{p}元，付了{paid}元，应该找回多少元？"
        return text, f"{p}×{q}={cost}，{paid}-{cost}={paid - cost}", paid - cost
    if form == 1:
        sp, t, d = rng.randint(8, 20), rng.randint(2, 4), rng.randint(2, 9)
        text = f"{name}骑车每小时行{sp}千米，骑了{t}小时后又步行了{d}千米，一共走了多少千米？"
        return text, f"{sp}×{t}={sp * t}，{sp * t}+{d}={sp * t + d}", sp * t + d
    if form == 2:
        p, d = rng.randint(5, 20), rng.randint(2, 6)
        total = p * d + rng.randint(5, 60)
        text = f"一本书有{total}页，{name}每天读{p}页，读了{d}天后还剩多少页？"
        return text, f"{p}×{d}={p * d}，{total}-{p * d}={total - p * d}", total - p * d
    if form == 3:
        other = v.name(rng, avoid=(name,))
        a, b, c = rng.randint(5, 15), rng.randint(2, 9), rng.randint(2, 9)
        text = f"{name}今年{a}岁，{other}比{name}大{b}岁，{c}年后{other}多少岁？"
        return text, f"{a}+{b}={a + b}，{a + b}+{c}={a + b + c}", a + b + c
    mw, obj = rng.choice(COT_OBJECTS)
    g, each, extra = rng.randint(2, 6), rng.randint(2, 8), rng.randint(1, 5)
    text = f"{name}把{g * each}{mw}{obj}平均分给{g}个小朋友，每人又多得{extra}{mw}，每人一共有多少{mw}？"
    return text, f"{g * each}÷{g}={each}，{each}+{extra}={each + extra}", each + extra


def _gen_cot(rng: random.Random, v: _Vocab, k: dict) -> Item:
    text, work, ans = (_cot_chain if rng.random() < 0.5 else _cot_fixed)(rng, v, k)
    return rng.choice(COT_INSTR), text, f"{work}，答案是{ans}。", {"type": "number", "answer": ans}


CODE_INSTR = ["写一个Python函数{sig}，{desc}。", "用Python定义函数{sig}，{desc}。",
              "请实现Python函数{sig}：{desc}。", "编写函数{sig}，要求{desc}。"]

CODE_GENERIC_NAMES = ["solve", "func", "compute"]

ARGS = {"num": ["x", "n", "num", "value"], "str": ["s", "text", "word", "t"],
        "list": ["xs", "nums", "items", "lst"], "two_num": ["a,b", "x,y", "m,n", "p,q"],
        "two_str": ["a,b", "s1,s2", "left,right", "u,v"]}


# (family, arg kind, description, body, function names, parameter: None | "k" | "c")
CODE_FAMILIES = [
    ("add", "num", "返回{a}加上{k}的结果", "return {a} + {k}", ["add_{k}", "plus_{k}"], "k"),
    ("sub", "num", "返回{a}减去{k}的结果", "return {a} - {k}", ["sub_{k}", "minus_{k}"], "k"),
    ("mul", "num", "返回{a}乘以{k}的结果", "return {a} * {k}", ["times_{k}", "mul_{k}"], "k"),
    ("mod", "num", "返回{a}除以{k}的余数", "return {a} % {k}", ["mod_{k}", "rem_{k}"], "k"),
    ("divisible", "num", "判断整数{a}能否被{k}整除，返回True或False", "return {a} % {k} == 0",
     ["divisible_by_{k}", "is_multiple_of_{k}"], "k"),
    ("greater", "num", "判断{a}是否大于{k}，返回True或False", "return {a} > {k}",
     ["greater_than_{k}", "above_{k}"], "k"),
    ("affine", "num", "返回{a}的两倍再加{k}", "return 2 * {a} + {k}", ["double_plus_{k}", "twice_add_{k}"], "k"),
    ("square", "num", "返回{a}的平方", "return {a} ** 2", ["square", "sq"], None),
    ("cube", "num", "返回{a}的立方", "return {a} ** 3", ["cube", "to_cube"], None),
    ("absolute", "num", "返回{a}的绝对值", "return abs({a})", ["absolute", "abs_value"], None),
    ("sum_to", "num", "返回从1到{a}所有整数的和", "return sum(range(1, {a} + 1))", ["sum_to", "total_up_to"], None),
    ("reverse", "str", "返回字符串{a}反转后的结果", "return {a}[::-1]", ["reverse", "reverse_str"], None),
    ("upper", "str", "把字符串{a}转换成大写后返回", "return {a}.upper()", ["to_upper", "shout"], None),
    ("repeat", "str", "返回把字符串{a}重复{k}次得到的字符串", "return {a} * {k}", ["repeat_{k}", "echo_{k}"], "k"),
    ("count_char", "str", "返回字符串{a}中字母{c}出现的次数", "return {a}.count('{c}')",
     ["count_{c}", "how_many_{c}"], "c"),
    ("starts", "str", "判断字符串{a}是否以字母{c}开头", "return {a}.startswith('{c}')",
     ["starts_with_{c}", "begins_{c}"], "c"),
    ("length", "str", "返回字符串{a}的长度", "return len({a})", ["length", "str_len"], None),
    ("list_sum", "list", "返回列表{a}中所有数的和", "return sum({a})", ["list_sum", "total"], None),
    ("list_max", "list", "返回列表{a}中最大的数", "return max({a})", ["list_max", "biggest"], None),
    ("list_min", "list", "返回列表{a}中最小的数", "return min({a})", ["list_min", "smallest"], None),
    ("list_len", "list", "返回列表{a}的元素个数", "return len({a})", ["list_len", "count_items"], None),
    ("first", "list", "返回列表{a}的第一个元素", "return {a}[0]", ["first", "head"], None),
    ("last", "list", "返回列表{a}的最后一个元素", "return {a}[-1]", ["last", "tail"], None),
    ("evens", "list", "返回列表{a}中所有偶数组成的新列表", "return [v for v in {a} if v % 2 == 0]",
     ["evens", "keep_even"], None),
    ("count_gt", "list", "返回列表{a}中大于{k}的数的个数", "return len([v for v in {a} if v > {k}])",
     ["count_above_{k}", "num_gt_{k}"], "k"),
    ("add_all", "list", "返回把列表{a}中每个数都加上{k}后的新列表", "return [v + {k} for v in {a}]",
     ["add_all_{k}", "shift_{k}"], "k"),
    ("max2", "two_num", "返回{a}和{b}中较大的数", "return max({a}, {b})", ["larger", "max_of_two"], None),
    ("min2", "two_num", "返回{a}和{b}中较小的数", "return min({a}, {b})", ["smaller", "min_of_two"], None),
    ("area", "two_num", "返回长为{a}、宽为{b}的长方形的面积", "return {a} * {b}", ["area", "rect_area"], None),
    ("mean2", "two_num", "返回{a}和{b}的平均值", "return ({a} + {b}) / 2", ["mean", "average"], None),
    ("concat", "two_str", "返回把字符串{a}和{b}首尾连接起来的结果", "return {a} + {b}", ["join_two", "concat"], None),
]

CODE_WORDS = _w("apple banana hello python level data cat moon river tiger paper sun book cake")

_CODE_CACHE: dict[str, Callable] = {}


def _code_inputs(rng: random.Random, kind: str, family: str, c: str) -> list[tuple]:
    out: list[tuple] = []
    while len(out) < 3:
        if kind == "num":
            x = (rng.randint(1, 10),) if family == "sum_to" else (rng.randint(-5, 20),)
        elif kind == "str":
            w = rng.choice(CODE_WORDS)
            if c and rng.random() < 0.5:
                w = c + w
            x = (w,)
        elif kind == "list":
            x = ([rng.randint(0, 20) for _ in range(rng.randint(2, 5))],)
        elif kind == "two_num":
            x = (rng.randint(-5, 20), rng.randint(-5, 20))
        else:
            x = (rng.choice(CODE_WORDS), rng.choice(CODE_WORDS))
        if x not in out:
            out.append(x)
    return out


def _gen_code(rng: random.Random, v: _Vocab, k: dict) -> Item:
    while True:
        family, kind, desc, body, names, param = rng.choice(CODE_FAMILIES)
        kval = rng.randint(2, 20) if param == "k" else ""
        cval = rng.choice("abcdefghijklmnoprstuvw") if param == "c" else ""
        fname = rng.choice(names + CODE_GENERIC_NAMES).format(k=kval, c=cval)
        args = rng.choice(ARGS[kind]).split(",")
        key = f"{family}|{kval}|{cval}|{fname}|{','.join(args)}"
        if _in_split(key, v.split, k):
            break
    fill = {"a": args[0], "b": args[-1], "k": kval, "c": cval}
    code_body = body.format(**fill)
    code = f"def {fname}({', '.join(args)}):\n    {code_body}"
    fn = _CODE_CACHE.get(code)
    if fn is None:  # our own generated reference code, run once to compute expected values
        ns: dict = {}
        exec(code, ns)  # noqa: S102 - trusted, generated above
        fn = _CODE_CACHE[code] = ns[fname]
    tests = []
    for x in _code_inputs(rng, kind, family, cval):
        tests.append(f"assert {fname}({', '.join(repr(a) for a in x)}) == {fn(*x)!r}")
    if kind == "str":
        desc_fill = dict(fill, c=f"'{cval}'")
    else:
        desc_fill = fill
    instruction = rng.choice(CODE_INSTR).format(sig=f"{fname}({', '.join(args)})", desc=desc.format(**desc_fill))
    return instruction, "", code, {"type": "python_tests", "entry": fname, "tests": tests}


POSITIVE = _w("质量很好 做工精致 用起来很顺手 外观很漂亮 性价比很高 物流特别快 完全符合预期 "
              "非常满意 包装很用心 比想象中还好")

NEGATIVE = _w("质量太差了 做工很粗糙 用了两天就坏了 和图片差别很大 价格贵得离谱 发货特别慢 "
              "有一股难闻的味道 让人很失望 客服一直不回复 退货非常麻烦")

SENT_CLOSE = {"正面": ["下次还会再买", "推荐给大家", "给五星好评"], "负面": ["再也不会买了", "不推荐购买", "只能给一星"]}

SENT_TEMPLATES = ["这个{p}{x}，{y}。", "买的{p}{x}，{y}。", "刚收到{p}，{x}，{z}。", "用了一周，这款{p}{x}，{z}。",
                  "{p}{x}，{y}，{z}。"]

SENT_INSTR = ["判断下面这条评论的情感倾向，回答正面或负面。", "这条商品评价是正面的还是负面的？",
              "对下面的评论做情感分类（正面/负面）。", "请判断评论的情感：正面还是负面？"]

TOPICS = {
    "体育": ["{c}队昨晚以{a}比{b}赢下了联赛的关键一战。", "{c}马拉松本周日开跑，预计有{n}千名选手参加。",
           "{c}游泳队在全国锦标赛上获得了{a}枚金牌。", "{c}的足球青训营今年招收了{n}0名小球员。"],
    "科技": ["{c}一家公司发布了新款无人机，续航提升了{a}成。", "{c}建成了新的数据中心，算力提升了{a}倍。",
           "{c}的科研团队研发出一种新型电池材料。", "{c}已实现第五代移动通信网络全覆盖。"],
    "财经": ["{c}今年前三季度的地区生产总值同比增长{a}%。", "受利好消息影响，{c}本地上市公司的股价普遍上涨。",
           "{c}出台新政策，降低小微企业的贷款利率。", "{c}的房价已经连续{a}个月小幅下降。"],
    "娱乐": ["{c}将举办一场大型演唱会，门票开售{a}分钟就被抢光。", "一部在{c}取景的电影昨日上映，首日票房过亿。",
           "{c}国际电影节公布了今年的入围影片名单。", "一档热门综艺节目来到{c}录制，吸引了大批观众。"],
    "教育": ["{c}今年将新建{a}所小学，增加学位{n}千个。", "{c}的多所高中开始试点走班教学。",
           "{c}教育局发布通知，中小学将延长课后服务时间。", "{c}一所大学今年新开设了{a}个本科专业。"],
}

TOPIC_INSTR = ["判断下面这条新闻属于哪个类别：体育、科技、财经、娱乐、教育。",
               "给新闻分类，从体育、科技、财经、娱乐、教育中选一个。",
               "这条新闻的主题是什么？（体育/科技/财经/娱乐/教育）", "请为下面的新闻选择类别：体育、科技、财经、娱乐或教育。"]

INTENTS = {
    "天气": ["{c}明天会下雨吗？", "查一下{c}这周末的气温。", "后天去{c}，那边冷不冷？", "{c}现在刮风吗？"],
    "音乐": ["播放一首关于{c}的歌。", "我在去{c}的路上，放点轻松的音乐吧。", "打开{c}音乐电台。",
           "来一首{c}歌手唱的流行歌。"],
    "闹钟": ["明天要去{c}，帮我定一个早上{h}点的闹钟。", "设一个{h}点半的闹钟，我要赶去{c}的火车。",
           "明早{h}点叫醒我，我要飞{c}。", "定个{h}点的闹钟，提醒我出发去{c}。"],
    "导航": ["导航去{c}火车站。", "从这里开车到{c}怎么走？", "帮我规划一条去{c}博物馆的路线。", "带我去{c}机场。"],
}

INTENT_INSTR = ["判断用户的意图属于哪一类：天气、音乐、闹钟、导航。", "识别这句话的意图（天气/音乐/闹钟/导航）。",
                "下面这句指令想做什么？从天气、音乐、闹钟、导航中选一个。", "请对用户指令分类：天气、音乐、闹钟或导航。"]


def _gen_classification(rng: random.Random, v: _Vocab, k: dict) -> Item:
    task = rng.randrange(3)
    if task == 0:
        label = rng.choice(["正面", "负面"])
        phrases = POSITIVE if label == "正面" else NEGATIVE
        x, y = rng.sample(phrases, 2)
        text = rng.choice(SENT_TEMPLATES).format(p=rng.choice(v.products), x=x, y=y,
                                                 z=rng.choice(SENT_CLOSE[label]))
        return rng.choice(SENT_INSTR), text, label, {"type": "label", "label": label, "labels": ["正面", "负面"]}
    table, instr = (TOPICS, TOPIC_INSTR) if task == 1 else (INTENTS, INTENT_INSTR)
    labels = list(table)
    label = rng.choice(labels)
    text = rng.choice(table[label]).format(c=v.city(rng), a=rng.randint(2, 9), b=rng.randint(0, 1),
                                           n=rng.randint(2, 9), h=rng.randint(5, 9))
    return rng.choice(instr), text, label, {"type": "label", "label": label, "labels": labels}


EXTRACT_SENTENCES = [  # (template, has date, two people)
    ("{d}，{p}在{c}{a}。", True, False),
    ("{p}于{d}到{c}{a}。", True, False),
    ("上周，{p}和{q}在{c}{a}。", False, True),
    ("住在{c}的{p}在{d}{a}。", True, False),
    ("据报道，{p}{d}在{c}{a}。", True, False),
    ("{d}，{p}和{q}一起去{c}{a}。", True, True),
]

EXTRACT_TASKS = {
    "person": ["找出下面句子中的人名。", "句子里提到了哪些人？只写人名。", "提取句子中的人名，多个人名用顿号隔开。"],
    "city": ["找出下面句子中出现的城市名。", "这句话提到了哪个城市？", "提取句子中的地名。"],
    "date": ["提取句子中的日期。", "这句话里的事情发生在哪一天？只写日期。", "找出句子中的日期。"],
    "person_city": ["抽取句子中的人名和地名，用顿号隔开。", "找出句子里的人名和城市名。", "提取人名和地名。"],
}


def _gen_extraction(rng: random.Random, v: _Vocab, k: dict) -> Item:
    template, has_date, two = rng.choice(EXTRACT_SENTENCES)
    p = v.name(rng)
    q = v.name(rng, avoid=(p,)) if two else ""
    c, d = v.city(rng), _date(rng)
    sentence = template.format(p=p, q=q, c=c, d=d, a=rng.choice(ACTS))
    people = [p, q] if two else [p]
    tasks = ["person", "city", "person_city"] + (["date"] if has_date else [])
    task = rng.choice(tasks)
    spans = {"person": people, "city": [c], "date": [d], "person_city": people + [c]}[task]
    return rng.choice(EXTRACT_TASKS[task]), sentence, "、".join(spans), {"type": "spans", "spans": spans}


COUNTRIES = [  # (country, capital or "", continent or "")
    ("中国", "北京", "亚洲"), ("日本", "东京", "亚洲"), ("韩国", "首尔", "亚洲"), ("印度", "新德里", "亚洲"),
    ("泰国", "曼谷", "亚洲"), ("越南", "河内", "亚洲"), ("马来西亚", "吉隆坡", "亚洲"),
    ("印度尼西亚", "雅加达", "亚洲"), ("菲律宾", "马尼拉", "亚洲"), ("蒙古", "乌兰巴托", "亚洲"),
    ("巴基斯坦", "伊斯兰堡", "亚洲"), ("伊朗", "德黑兰", "亚洲"), ("沙特阿拉伯", "利雅得", "亚洲"),
    ("尼泊尔", "加德满都", "亚洲"), ("老挝", "万象", "亚洲"), ("柬埔寨", "金边", "亚洲"),
    ("法国", "巴黎", "欧洲"), ("德国", "柏林", "欧洲"), ("英国", "伦敦", "欧洲"), ("意大利", "罗马", "欧洲"),
    ("西班牙", "马德里", "欧洲"), ("葡萄牙", "里斯本", "欧洲"), ("荷兰", "阿姆斯特丹", "欧洲"),
    ("比利时", "布鲁塞尔", "欧洲"), ("奥地利", "维也纳", "欧洲"), ("瑞典", "斯德哥尔摩", "欧洲"),
    ("挪威", "奥斯陆", "欧洲"), ("芬兰", "赫尔辛基", "欧洲"), ("丹麦", "哥本哈根", "欧洲"),
    ("波兰", "华沙", "欧洲"), ("希腊", "雅典", "欧洲"), ("爱尔兰", "都柏林", "欧洲"),
    ("匈牙利", "布达佩斯", "欧洲"), ("捷克", "布拉格", "欧洲"), ("俄罗斯", "莫斯科", ""),
    ("埃及", "开罗", "非洲"), ("肯尼亚", "内罗毕", "非洲"), ("尼日利亚", "阿布贾", "非洲"),
    ("埃塞俄比亚", "亚的斯亚贝巴", "非洲"), ("摩洛哥", "拉巴特", "非洲"), ("南非", "", "非洲"),
    ("美国", "华盛顿", "北美洲"), ("加拿大", "渥太华", "北美洲"), ("墨西哥", "墨西哥城", "北美洲"),
    ("古巴", "哈瓦那", "北美洲"), ("巴西", "巴西利亚", "南美洲"), ("阿根廷", "布宜诺斯艾利斯", "南美洲"),
    ("秘鲁", "利马", "南美洲"), ("哥伦比亚", "波哥大", "南美洲"), ("智利", "圣地亚哥", "南美洲"),
    ("澳大利亚", "堪培拉", "大洋洲"), ("新西兰", "惠灵顿", "大洋洲"),
]

KINDS_OF_THINGS = {
    "水果": _w("苹果 香蕉 葡萄 西瓜 草莓 菠萝 芒果 荔枝 樱桃 柠檬 石榴 猕猴桃 山竹 榴莲"),
    "蔬菜": _w("白菜 菠菜 芹菜 土豆 胡萝卜 茄子 黄瓜 南瓜 洋葱 韭菜 豆角 生菜 莲藕 冬瓜"),
    "乐器": _w("钢琴 小提琴 二胡 琵琶 古筝 笛子 吉他 大提琴 萨克斯 唢呐 手风琴 竖琴"),
    "文具": _w("铅笔 橡皮 尺子 圆规 订书机 胶水 钢笔 笔袋 剪刀 便利贴 荧光笔 卷笔刀"),
    "家具": _w("沙发 衣柜 书架 餐桌 床头柜 茶几 鞋柜 椅子 梳妆台 电视柜"),
    "交通工具": _w("自行车 公交车 地铁 飞机 轮船 摩托车 出租车 高铁 电动车 直升机"),
    "鸟类": _w("麻雀 燕子 喜鹊 老鹰 鸽子 孔雀 鹦鹉 企鹅 天鹅 啄木鸟 猫头鹰 丹顶鹤"),
    "哺乳动物": _w("老虎 狮子 大象 熊猫 兔子 长颈鹿 斑马 猴子 骆驼 袋鼠 海豚 蝙蝠"),
    "鱼类": _w("鲤鱼 草鱼 鲫鱼 金枪鱼 三文鱼 带鱼 鲨鱼 金鱼 鳕鱼 黄花鱼"),
}

ANTONYMS = [tuple(p.split("/")) for p in _w(
    "大/小 高/矮 长/短 快/慢 冷/热 多/少 新/旧 胖/瘦 远/近 深/浅 轻/重 宽/窄 厚/薄 硬/软 干/湿 "
    "真/假 买/卖 进/出 哭/笑 早/晚 开心/难过 安全/危险 简单/复杂 干净/肮脏 勇敢/胆小 成功/失败 "
    "光明/黑暗 容易/困难 聪明/愚蠢 富有/贫穷 开始/结束 增加/减少 出发/到达 进步/退步 明亮/昏暗 "
    "整齐/杂乱 温暖/寒冷 古代/现代 正确/错误 美丽/丑陋 快乐/悲伤 熟悉/陌生 勤劳/懒惰 拥挤/宽敞 "
    "热情/冷淡 认真/马虎 节约/浪费 团结/分裂 陡峭/平缓 坚硬/柔软 粗糙/光滑 清楚/模糊 谦虚/骄傲 "
    "失去/得到 前进/后退 上升/下降 诚实/虚伪 轻松/沉重 稀少/众多 安静/吵闹 积极/消极")]

BOOKS = [("红楼梦", "曹雪芹"), ("西游记", "吴承恩"), ("水浒传", "施耐庵"), ("三国演义", "罗贯中"),
         ("呐喊", "鲁迅"), ("骆驼祥子", "老舍"), ("子夜", "茅盾"), ("边城", "沈从文"), ("围城", "钱钟书"),
         ("雷雨", "曹禺"), ("平凡的世界", "路遥"), ("朝花夕拾", "鲁迅"), ("茶馆", "老舍"),
         ("哈姆雷特", "莎士比亚"), ("悲惨世界", "雨果"), ("老人与海", "海明威"), ("堂吉诃德", "塞万提斯"),
         ("战争与和平", "托尔斯泰"), ("巴黎圣母院", "雨果"), ("城南旧事", "林海音")]

QA_PREFIX = ["", "请回答：", "问题：", "简单回答：", "请直接回答：", "考考你："]


def _qa_groups() -> list[list[tuple[str, str]]]:
    """One group of (question, answer) phrasings per fact, relation by relation."""
    groups: list[list[tuple[str, str]]] = []

    def add(entities: list[tuple[str, str]], phrasings: tuple[str, ...]) -> None:
        for x, ans in entities:
            groups.append([(q.format(x=x), ans) for q in phrasings])

    add([(c, cap) for c, cap, _ in COUNTRIES if cap], ("{x}的首都是哪座城市？", "{x}的首都是哪里？", "哪座城市是{x}的首都？"))
    add([(c, ct) for c, _, ct in COUNTRIES if ct], ("{x}位于哪个大洲？", "{x}在哪个洲？"))
    for a, b in ANTONYMS:  # both directions of a pair stay on the same side of the split
        groups.append([(q.format(x=x), y) for x, y in ((a, b), (b, a))
                       for q in ("“{x}”的反义词是什么？", "与“{x}”意思相反的词是什么？", "“{x}”的反义词是哪个词？")])
    add(BOOKS, ("《{x}》的作者是谁？", "谁写了《{x}》？"))
    kinds = list(KINDS_OF_THINGS)
    for kind, things in KINDS_OF_THINGS.items():
        for t in things:
            groups.append([(f"{t}属于{a}还是{b}？", kind) for other in kinds if other != kind
                           for a, b in ((kind, other), (other, kind))])
    return groups


def _qa_split() -> dict[str, list[list[tuple[str, str]]]]:
    out = _split(_qa_groups())
    for split in ("pool", "eval"):  # city -> province facts follow the split of CITIES
        out[split] += [[(q.format(x=c), p) for q in ("{x}属于哪个省级行政区？", "{x}是哪个省份的城市？", "{x}位于哪个省？")]
                       for c, p in CITY_PROVINCE if p and c in CITIES[split]]
    return out


_QA = _qa_split()


def _gen_open_qa(rng: random.Random, v: _Vocab, k: dict) -> Item:
    group = rng.choice(_QA[v.split])
    q, a = rng.choice(group)
    return rng.choice(QA_PREFIX) + q, "", a, {"type": "text"}


CLOSED_INSTR = ["阅读短文并回答问题。", "根据下面的短文回答问题，答案从原文中摘取。", "请根据短文内容作答。",
                "读下面的材料，然后回答问题。"]


def _gen_closed_qa(rng: random.Random, v: _Vocab, k: dict) -> Item:
    name, city, form = v.name(rng), v.city(rng), rng.randrange(4)
    if form == 0:
        job, age, hobby = rng.choice(JOBS), rng.randint(20, 65), rng.choice(HOBBIES)
        passage = f"{name}是一名{job}，住在{city}，今年{age}岁，平时喜欢{hobby}。"
        qa = [(f"{name}的职业是什么？", job), (f"{name}住在哪座城市？", city),
              (f"{name}今年多大？", f"{age}岁"), (f"{name}平时喜欢做什么？", hobby)]
    elif form == 1:
        date, venue, event, n = _date(rng), rng.choice(VENUES), rng.choice(EVENTS), rng.randint(2, 30) * 50
        passage = f"{date}，{name}将在{city}{venue}举办{event}，预计有{n}人到场。"
        qa = [(f"{event}在哪座城市举办？", city), (f"{event}什么时候举办？", date), ("预计有多少人到场？", f"{n}人"),
              (f"谁将举办{event}？", name), (f"{event}在什么场馆举办？", venue)]
    elif form == 2:
        color, product, price, n = rng.choice(COLORS), rng.choice(v.products), rng.randint(3, 99) * 10, rng.randint(5, 80)
        passage = f"{name}在{city}开的店里卖一款{color}的{product}，售价{price}元，每天能卖出{n}件。"
        qa = [(f"这款{product}是什么颜色？", color), (f"这款{product}售价多少？", f"{price}元"),
              ("这家店开在哪座城市？", city), ("店主是谁？", name), ("每天能卖出多少件？", f"{n}件")]
    else:
        city2, date, vehicle, h = v.city(rng, avoid=(city,)), _date(rng), rng.choice(VEHICLES), rng.randint(2, 12)
        passage = f"{name}{date}从{city}坐{vehicle}去{city2}，路上花了{h}个小时。"
        qa = [(f"{name}从哪里出发？", city), (f"{name}要去哪里？", city2), (f"{name}坐什么去？", vehicle),
              ("路上花了多长时间？", f"{h}个小时"), (f"{name}哪天出发？", date)]
    q, a = rng.choice(qa)
    return (rng.choice(CLOSED_INSTR), f"短文：{passage}\n问题：{q}", a,
            {"type": "answer_in_passage", "answer": a})


WISHES = _w("天天开心 身体健康 心想事成 万事如意 学业进步 工作顺利 笑口常开 前程似锦")

SLOGAN_TAILS = _w("看不一样的风景 遇见更好的自己 感受千年的文化 品尝地道的美食 留下难忘的回忆 慢下来享受生活")

AD_TAILS = _w("让生活更有品位 每天都有好心情 品质看得见 陪你走过每一天 简单好用更放心 给家人最好的")

PLACE_ACTS = [("公园", "散步"), ("海边", "看日出"), ("操场", "跑步"), ("湖边", "钓鱼"), ("图书馆", "看书"),
              ("山顶", "看风景"), ("广场", "放风筝"), ("商场", "买衣服"), ("博物馆", "参观"), ("球场", "打球"),
              ("菜市场", "买菜"), ("游泳馆", "游泳")]

WHENS = _w("周末 昨天下午 每天傍晚 放假的时候 今天早上")

COMPANIONS = _w("家人 朋友 同学 爷爷 妹妹 邻居")

SEASONS = {
    "春天": ["到处开满了鲜花", "柳树抽出了新芽", "微风吹在脸上很舒服", "公园里挤满了踏青的人"],
    "夏天": ["阳光格外灿烂", "知了在树上叫个不停", "孩子们在水边玩耍", "夜晚的街头十分热闹"],
    "秋天": ["树叶慢慢变黄了", "天空又高又蓝", "果园里的果子成熟了", "早晚的风有些凉"],
    "冬天": ["街上的人都穿上了厚衣服", "湖面结了一层薄冰", "热气腾腾的火锅最受欢迎", "太阳出来时格外暖和"],
}

THANKS = _w("一直以来的耐心教导 在我困难时的帮助 让我爱上了读书 每天认真批改作业 教会我做人的道理")


def _constraints(output: str, required: list[str], count: int | None = None, unit: str = "items") -> dict:
    n = len("".join(output.split()))
    return {"type": "constraints", "count": count, "unit": unit, "required": required,
            "min_chars": max(2, n // 2), "max_chars": n * 2 + 10}


def _gen_generation(rng: random.Random, v: _Vocab, k: dict) -> Item:
    form = rng.randrange(7)
    if form == 0:
        name = v.name(rng)
        w1, w2 = rng.sample(WISHES, 2)
        instr = rng.choice(["给{n}写一句生日祝福。", "写一句祝{n}生日快乐的话。", "{n}今天过生日，写一句祝福语。"])
        return instr.format(n=name), "", f"祝{name}生日快乐，{w1}，{w2}！", _constraints(
            f"祝{name}生日快乐，{w1}，{w2}！", [name, "生日"])
    if form == 1:
        city, name = v.city(rng), v.name(rng)
        out = f"欢迎来{city}，{rng.choice(SLOGAN_TAILS)}！"
        instr = rng.choice(["{n}想为{c}写一句旅游宣传语，请帮他写一句。", "替{n}给{c}写一句旅游宣传口号。"])
        return instr.format(c=city, n=name), "", out, _constraints(out, [city, "欢迎"])
    if form == 2:
        color, product = rng.choice(COLORS), rng.choice(v.products)
        out = f"{color}{product}，{rng.choice(AD_TAILS)}！"
        instr = rng.choice(["为一款{a}的{p}写一句广告语。", "给{a}{p}想一句广告词。", "写一句推销{a}{p}的广告语。"])
        return instr.format(a=color, p=product), "", out, _constraints(out, [product, color])
    if form == 3:
        place, act = rng.choice(PLACE_ACTS)
        name = v.name(rng)
        out = f"{rng.choice(WHENS)}，{name}和{rng.choice(COMPANIONS)}去{place}{act}。"
        instr = rng.choice(["用“{a}”和“{b}”写一句关于{n}的话。", "以{n}为主角，用“{a}”和“{b}”造一个句子。"])
        return instr.format(a=place, b=act, n=name), "", out, _constraints(out, [place, act, name])
    if form == 4:
        season = rng.choice(list(SEASONS))
        city = v.city(rng)
        d1, d2 = rng.sample(SEASONS[season], 2)
        out = f"{season}的{city}，{d1}。{d2}。"
        instr = rng.choice(["用两句话描写{c}的{s}。", "写两句话，描述{s}的{c}。"])
        return instr.format(c=city, s=season), "", out, _constraints(out, [city, season], 2, "sentences")
    if form == 5:
        event, date, city = rng.choice(EVENTS), _date(rng), v.city(rng)
        out = f"通知：{city}{event}改到{date}举行，请大家相互转告。"
        instr = rng.choice(["写一句通知：{c}{e}改到{d}举行。", "{c}{e}的时间改成了{d}，写一句通知告诉大家。"])
        return instr.format(c=city, e=event, d=date), "", out, _constraints(out, [event, date, city])
    name = v.name(rng)
    out = f"{name}老师，谢谢您{rng.choice(THANKS)}，您辛苦了！"
    instr = rng.choice(["替学生给{n}老师写一句感谢的话。", "写一句话感谢{n}老师。"])
    return instr.format(n=name), "", out, _constraints(out, [name, "谢谢"])


BRAIN_KINDS = _split(list(KINDS_OF_THINGS) + ["球类运动", "中国传统节日", "家用电器", "厨房用具", "花", "饮料",
                                              "职业", "颜色"])

_EXTRA_KINDS = {
    "球类运动": _w("足球 篮球 排球 乒乓球 羽毛球 网球 棒球 高尔夫球"),
    "中国传统节日": _w("春节 元宵节 清明节 端午节 中秋节 重阳节 七夕节 腊八节"),
    "家用电器": _w("冰箱 洗衣机 空调 电视机 微波炉 电饭锅 吸尘器 电风扇"),
    "厨房用具": _w("菜刀 砧板 炒锅 锅铲 汤勺 蒸笼 擀面杖 漏勺"),
    "花": _w("玫瑰 菊花 荷花 牡丹 梅花 兰花 茉莉 郁金香"),
    "饮料": _w("牛奶 果汁 豆浆 绿茶 咖啡 酸奶 椰汁 柠檬水"),
    "职业": JOBS,
    "颜色": COLORS,
}

SHOPS = _w("面包店 咖啡馆 花店 书店 奶茶店 火锅店 面馆 理发店 宠物店 水果店 文具店 烘焙坊")

SHOP_PREFIX = _w("阳光 小满 星光 暖心 老街 晨曦 花间 悦来 福满 青禾 拾光 云朵 麦田 好运")

WEEKEND = _w("去公园散步 逛一逛博物馆 尝尝特色小吃 约朋友看电影 到郊外爬山 去书店看书 骑车兜风 听一场音乐会")

RELATIONS = _w("妈妈 爸爸 奶奶 爷爷 同学 好朋友 老师 同事")

GIFTS = _w("一条围巾 一束鲜花 一本好书 一块手表 一本相册 一盒茶叶 一副耳机 一张手写贺卡 一双运动鞋 一个蛋糕")

GOALS = _split([
    ("学好英语", _w("每天背二十个单词 多听英语广播 找朋友练习口语 坚持用英语写日记 看英文电影")),
    ("早睡早起", _w("睡前不看手机 固定起床时间 晚饭不要吃太饱 白天适量运动 睡前用热水泡脚")),
    ("减轻压力", _w("每天散步半小时 和朋友聊聊天 听舒缓的音乐 保证充足的睡眠 把任务写下来逐个完成")),
    ("节约用水", _w("洗菜的水用来浇花 及时关紧水龙头 缩短洗澡时间 使用节水马桶 衣服攒够了再洗")),
    ("保护视力", _w("看书时保持正确姿势 每隔一小时远眺一会儿 少玩电子游戏 多到户外活动 光线暗时不要看书")),
    ("学会理财", _w("每月记账 先存钱再消费 不买用不上的东西 设定储蓄目标 了解基本的理财知识")),
    ("提高写作水平", _w("多读优秀的文章 每天写一段话 积累好词好句 请别人帮忙修改 写完后大声朗读")),
    ("锻炼身体", _w("每天快走一万步 每周游两次泳 坚持做拉伸 爬楼梯代替坐电梯 和朋友一起打球")),
    ("养好绿植", _w("放在通风的地方 不要浇太多水 定期晒晒太阳 适时施肥 及时剪掉枯叶")),
    ("交到新朋友", _w("参加兴趣小组 主动和别人打招呼 认真倾听别人说话 多参加集体活动 真诚待人")),
])


def _numbered(items: list[str]) -> str:
    return "\n".join(f"{i}. {x}" for i, x in enumerate(items, 1))


def _gen_brainstorming(rng: random.Random, v: _Vocab, k: dict) -> Item:
    b = k["brainstorming"]
    n = rng.randint(b["min_items"], b["max_items"])
    cn = CN_COUNT.get(n, str(n))
    form = rng.randrange(5)
    required: list[str] = []
    if form == 0:
        kind = rng.choice(BRAIN_KINDS[v.split])
        items = rng.sample((KINDS_OF_THINGS | _EXTRA_KINDS)[kind], n)
        instr = rng.choice(["列出{n}种{k}。", "请说出{n}种{k}。", "举出{n}个{k}的例子。", "写出{n}种常见的{k}。"])
        instr = instr.format(n=cn, k=kind)
    elif form == 1:
        name, city, shop = v.name(rng), v.city(rng), rng.choice(SHOPS)
        items = [p + shop for p in rng.sample(SHOP_PREFIX, n)]
        instr = f"{name}打算在{city}开一家{shop}，请帮忙想{cn}个店名。"
        required = [shop]
    elif form == 2:
        name, city = v.name(rng), v.city(rng)
        items = rng.sample(WEEKEND, n)
        instr = rng.choice(["{p}周末在{c}，推荐{n}件可以做的事。", "{p}周末待在{c}，能做些什么？列出{n}项。"])
        instr = instr.format(p=name, c=city, n=cn)
    elif form == 3:
        name, rel = v.name(rng), rng.choice(RELATIONS)
        items = rng.sample(GIFTS, n)
        instr = rng.choice(["{p}的{r}快过生日了，推荐{n}种礼物。", "{p}想给{r}送生日礼物，给出{n}个建议。"])
        instr = instr.format(p=name, r=rel, n=cn)
    else:
        goal, tips = rng.choice(GOALS[v.split])
        items = rng.sample(tips, n)
        instr = rng.choice(["给想要{g}的人提{n}条建议。", "怎样才能{g}？列出{n}个方法。", "关于{g}，请给出{n}条建议。"])
        instr = instr.format(g=goal, n=cn)
    out = _numbered(items)
    return instr, "", out, _constraints(out, required, n, "items")


THINGS = _w("杯子 钥匙 雨伞 书包 作业本 手机 眼镜 花瓶 椅子 台历 篮子 水桶 字典 帽子")

PASSIVE_VPS = _w("弄丢了 借走了 拿走了 放进了柜子里 送给了邻居 擦干净了 搬到了门口")

SKILLS = _w("游泳 开车 弹钢琴 说日语 做蛋糕 下围棋 滑冰 修电脑")

FOODS = _w("面条 饺子 包子 火锅 烤鸭 炒饭 馄饨 米线 烧饼 凉皮")

BOOK_TOPICS = _w("历史 天文 烹饪 旅行 音乐 植物 恐龙 海洋 建筑 围棋")


def _gen_rewrite(rng: random.Random, v: _Vocab, k: dict) -> Item:
    name, form = v.name(rng), rng.randrange(7)
    if form == 0:
        thing, vp = rng.choice(THINGS), rng.choice(PASSIVE_VPS)
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
            s = rng.choice(SKILLS)
            src, out, facts = f"{name}会{s}。", f"{name}不会{s}。", [name, s, "不会"]
    elif form == 2:
        c = v.city(rng)
        instr = rng.choice(["把下面的句子改成疑问句。", "请把这句话改写成一般疑问句。"])
        src, out, facts = f"{name}明天要去{c}。", f"{name}明天要去{c}吗？", [name, c, "吗"]
    elif form == 3:
        thing = rng.choice(THINGS)
        instr = rng.choice(["把下面的话改得更礼貌一些。", "请用更客气的语气改写这句话。"])
        src, out, facts = f"{name}，把{thing}拿过来。", f"{name}，请把{thing}拿过来，谢谢。", [name, thing, "请"]
    elif form == 4:
        food = rng.choice(FOODS)
        instr = rng.choice(["把下面的口语改成书面语。", "请把这句话改写得更正式一些。"])
        src = f"{name}觉得这家店的{food}特别好吃。"
        out, facts = f"{name}认为这家店的{food}非常美味。", [name, food, "认为", "非常"]
    elif form == 5:
        c, job = v.city(rng), rng.choice(JOBS)
        instr = f"把下面句子里的“我”换成“{name}”。"
        src, out, facts = f"我在{c}当{job}。", f"{name}在{c}当{job}。", [name, c, job]
    else:
        topic = rng.choice(BOOK_TOPICS)
        instr = rng.choice(["把下面两句话合并成一句。", "请将这两句话合成一句话。"])
        src = f"{name}买了一本书。这本书是关于{topic}的。"
        out, facts = f"{name}买了一本关于{topic}的书。", [name, topic, "书"]
    return instr, src, out, {"type": "facts", "facts": facts}


# (Chinese, measure word, English singular, English plural)
T_NOUNS = [("苹果", "个", "apple", "apples"), ("香蕉", "根", "banana", "bananas"), ("猫", "只", "cat", "cats"),
           ("狗", "只", "dog", "dogs"), ("鸟", "只", "bird", "birds"), ("书", "本", "book", "books"),
           ("花", "朵", "flower", "flowers"), ("车", "辆", "car", "cars"), ("杯子", "个", "cup", "cups"),
           ("椅子", "把", "chair", "chairs"), ("桌子", "张", "table", "tables"), ("房子", "座", "house", "houses"),
           ("伞", "把", "umbrella", "umbrellas"), ("鱼", "条", "fish", "fish"), ("电脑", "台", "computer", "computers"),
           ("帽子", "顶", "hat", "hats"), ("蛋糕", "块", "cake", "cakes"), ("橙子", "个", "orange", "oranges"),
           ("自行车", "辆", "bike", "bikes"), ("风筝", "个", "kite", "kites")]

T_ADJS = [("红色", "red"), ("蓝色", "blue"), ("绿色", "green"), ("黄色", "yellow"), ("白色", "white"),
          ("黑色", "black"), ("漂亮", "beautiful"), ("干净", "clean"), ("便宜", "cheap"), ("新", "new"),
          ("旧", "old")]

T_NUMS = [(1, "一", "a"), (2, "两", "two"), (3, "三", "three"), (4, "四", "four"), (5, "五", "five"),
          (6, "六", "six")]


# (Chinese, English, is third-person singular)
T_SUBJECTS = [("我", "I", False), ("我们", "We", False), ("他", "He", True), ("她", "She", True),
              ("他们", "They", False), ("我的妹妹", "My sister", True), ("我的朋友", "My friend", True),
              ("你", "You", False)]

T_PLACES = [("厨房", "kitchen"), ("花园", "garden"), ("公园", "park"), ("图书馆", "library"),
            ("教室", "classroom"), ("房间", "room"), ("超市", "supermarket"), ("医院", "hospital")]

T_ACTS = [("跑步", "run", "runs"), ("看书", "read", "reads"), ("唱歌", "sing", "sings"), ("游泳", "swim", "swims"),
          ("做饭", "cook", "cooks"), ("学习英语", "study English", "studies English"),
          ("喝牛奶", "drink milk", "drinks milk"), ("打扫房间", "clean the room", "cleans the room"),
          ("骑自行车", "ride a bike", "rides a bike"), ("弹钢琴", "play the piano", "plays the piano")]

TO_EN = ["把下面的句子翻译成英文。", "请将这句话译成英语。", "翻译成英文：", "中译英："]

TO_ZH = ["把下面的英文翻译成中文。", "请将这句话译成中文。", "翻译成中文：", "英译中："]


def _be(subj_en: str, third: bool) -> str:
    return "am" if subj_en == "I" else ("is" if third else "are")


def _gen_translation(rng: random.Random, v: _Vocab, k: dict) -> Item:
    while True:
        form = rng.randrange(4)
        if form == 0:
            (zn, mw, en1, enp), (za, ea), (num, zh_num, en_num) = \
                rng.choice(T_NOUNS), rng.choice(T_ADJS), rng.choice(T_NUMS)
            zh = f"我有{zh_num}{mw}{za}的{zn}。"
            if num == 1:
                art = "an" if ea[0] in "aeiou" else "a"
                en = f"I have {art} {ea} {en1}."
            else:
                en = f"I have {en_num} {ea} {enp}."
            key = f"0|{zn}|{za}|{num}"
        elif form == 1:
            (zs, es, third), (zn, _, _, enp) = rng.choice(T_SUBJECTS), rng.choice(T_NOUNS)
            zh, en = f"{zs}喜欢{zn}。", f"{es} {'likes' if third else 'like'} {enp}."
            key = f"1|{zs}|{zn}"
        elif form == 2:
            (zs, es, third), (zp, ep) = rng.choice(T_SUBJECTS), rng.choice(T_PLACES)
            zh, en = f"{zs}在{zp}里。", f"{es} {_be(es, third)} in the {ep}."
            key = f"2|{zs}|{zp}"
        else:
            (zs, es, third), (za, e1, e3) = rng.choice(T_SUBJECTS), rng.choice(T_ACTS)
            zh, en = f"{zs}每天{za}。", f"{es} {e3 if third else e1} every day."
            key = f"3|{zs}|{za}"
        direction = rng.choice(["en", "zh"])
        if _in_split(f"{direction}|{key}", v.split, k):
            break
    if direction == "en":
        return rng.choice(TO_EN), zh, en, {"type": "translation", "target": "en"}
    return rng.choice(TO_ZH), en, zh, {"type": "translation", "target": "zh"}


SUM_INSTR = ["用一句话概括下面的内容。", "请为下面这段文字写一个简短摘要。", "总结下面这段话的主要内容。",
             "用一句话说明这段新闻讲了什么。"]

INDUSTRIES = _w("食品 服装 家电 物流 软件 玩具 家具 化妆品")

WEATHER = _w("大雨 小雨 大雪 雷阵雨 大风 大雾 冰雹")

SPORTS = _w("篮球 足球 排球 手球 冰球 水球")

FACILITIES = _w("图书馆 公园 博物馆 体育馆 美术馆 科技馆")


def _gen_summarization(rng: random.Random, v: _Vocab, k: dict) -> Item:
    city, name, form = v.city(rng), v.name(rng), rng.randrange(6)
    if form == 0:
        event, date, n = rng.choice(EVENTS), _date(rng), rng.randint(2, 60) * 100
        text = f"{date}，{city}举办了{event}。活动吸引了{n}名市民参加，现场气氛热烈。"
        out, facts = f"{city}举办{event}，{n}名市民参加。", [city, event, str(n)]
    elif form == 1:
        ind, p = rng.choice(INDUSTRIES), rng.randint(5, 60)
        text = f"{city}一家{ind}公司今年营收增长了{p}%。负责人{name}表示，这主要得益于新产品的推出。"
        out, facts = f"{city}一家{ind}公司营收增长{p}%。", [city, ind, f"{p}%"]
    elif form == 2:
        w, date, lo = rng.choice(WEATHER), _date(rng), rng.randint(-5, 20)
        text = f"气象台预报，{city}{date}将有{w}，气温{lo}到{lo + rng.randint(3, 10)}度。请市民注意出行安全。"
        out, facts = f"{city}{date}将有{w}。", [city, date, w]
    elif form == 3:
        city2, sport = v.city(rng, avoid=(city,)), rng.choice(SPORTS)
        a, b, n = rng.randint(2, 9), rng.randint(0, 1), rng.randint(2, 15)
        text = f"在昨晚的{sport}比赛中，{city}队以{a}比{b}战胜了{city2}队。这是{city}队本赛季的第{n}场胜利。"
        out, facts = f"{city}队{a}比{b}战胜{city2}队。", [city, city2, f"{a}比{b}"]
    elif form == 4:
        job, n = rng.choice(JOBS), rng.randint(2, 20)
        text = f"{name}是{city}的一名{job}。{n}年来，{name}每个周末都去社区做志愿服务。"
        out, facts = f"{city}{job}{name}坚持志愿服务{n}年。", [name, job, f"{n}年"]
    else:
        fac, n = rng.choice(FACILITIES), rng.randint(2, 90) * 10
        text = f"{city}新建了一座{fac}，占地{n}亩。这座{fac}每天免费向市民开放。"
        out, facts = f"{city}新建的{fac}免费开放。", [city, fac, "免费"]
    return rng.choice(SUM_INSTR), text, out, {"type": "facts", "facts": facts}


GENERATORS: dict[str, Callable[[random.Random, _Vocab, dict], Item]] = {
    "math": _gen_math, "code": _gen_code, "cot": _gen_cot, "classification": _gen_classification,
    "extraction": _gen_extraction, "open_qa": _gen_open_qa, "closed_qa": _gen_closed_qa,
    "generation": _gen_generation, "brainstorming": _gen_brainstorming, "rewrite": _gen_rewrite,
    "translation": _gen_translation, "summarization": _gen_summarization,
}

assert tuple(GENERATORS) == CATEGORIES


def _knobs(overrides: dict | None) -> dict:
    k = copy.deepcopy(DEFAULTS)
    for key, val in (overrides or {}).items():
        if key not in k:
            raise ValueError(f"unknown task knob {key!r}; known: {sorted(k)}")
        if isinstance(val, dict):
            unknown = set(val) - set(k[key])
            if unknown:
                raise ValueError(f"unknown task knob(s) {sorted(unknown)} under {key!r}; known: {sorted(k[key])}")
            k[key].update(val)
        else:
            k[key] = val
    return k


def stream(category: str, split: str, seed: int, knobs: dict | None = None) -> Iterator[dict]:
    """Endless stream of distinct items ``{instruction, input, output, check, category}``.

    Raises ``ValueError`` when ``DEFAULTS["max_tries"]`` draws in a row repeat earlier items
    (the category's template space for that split is exhausted).
    """
    if category not in GENERATORS:
        raise ValueError(f"unknown category {category!r}; known: {CATEGORIES}")
    if split not in ("pool", "eval"):
        raise ValueError(f"split must be 'pool' or 'eval', not {split!r}")
    k = _knobs(knobs)
    rng = random.Random(f"{seed}|{category}|{split}")
    vocab, gen, seen = _Vocab(split), GENERATORS[category], set()
    while True:
        for _ in range(k["max_tries"]):
            instruction, inp, output, check = gen(rng, vocab, k)
            if (instruction, inp) not in seen:
                break
        else:
            raise ValueError(f"task category {category!r} ({split}) exhausted after {len(seen)} distinct items; "
                             f"ask for fewer items")
        seen.add((instruction, inp))
        yield {"instruction": instruction, "input": inp, "output": output, "check": check, "category": category}


def generate(category: str, n: int, seed: int = 0, split: str = "pool", knobs: dict | None = None) -> list[dict]:
    """The first ``n`` items of ``stream(category, split, seed, knobs)`` (with their checks)."""
    it = stream(category, split, seed, knobs)
    return [next(it) for _ in range(n)]


def build_suite(seed: int, pool_size: int, eval_per_category: int,
                knobs: dict | None = None) -> tuple[list[dict], list[dict]]:
    """``(pool, eval)`` of the built-in suite; see the module docstring for the guarantees."""
    if pool_size < 0 or eval_per_category < 0:
        raise ValueError(f"pool_size and eval_per_category must be >= 0, got {pool_size}, {eval_per_category}")
    streams = {c: stream(c, "pool", seed, knobs) for c in CATEGORIES}
    pool, seen = [], set()
    width = max(6, len(str(max(pool_size - 1, 0))))
    for i in range(pool_size):
        cat = CATEGORIES[i % len(CATEGORIES)]
        while True:
            rec = next(streams[cat])
            key = (rec["instruction"], rec["input"])
            if key not in seen:  # another category produced the same text (never happens with these templates)
                break
        seen.add(key)
        pool.append({"id": f"pool-{i:0{width}d}", "instruction": rec["instruction"], "input": rec["input"],
                     "output": rec["output"], "category": cat})
    pool_questions = {make_question(r["instruction"], r["input"]) for r in pool}
    evals = []
    for cat in CATEGORIES:
        for j, rec in enumerate(generate(cat, eval_per_category, seed, "eval", knobs)):
            q = make_question(rec["instruction"], rec["input"])
            if q in pool_questions:
                raise AssertionError(f"eval item of {cat!r} occurs in the pool: {q!r}")
            evals.append({"id": f"eval-{cat}-{j:04d}", "category": cat, "question": q,
                          "reference": rec["output"], "check": rec["check"]})
    return pool, evals
