"""The content checks of BELLE-style cleaning, written once for the two places that clean data.

The ``quality`` selection strategy of the data stage (``helpers.data.selection``) and the
self-instruct stage's filters (``helpers.selfinstruct.filters``) both call ``check_reason``,
each with its own length limits; the first check that applies names the reason:
``self_reference`` (the answer talks about being an AI language model), ``multimodal`` (the
task needs an image, a link, a file, audio or video the model cannot see), the length limits,
and ``language_mismatch`` (a Chinese instruction answered in English, unless it is a
translation or code task).
"""
from __future__ import annotations

import re

SELF_REFERENCE = re.compile(
    r"(作为|我是|我只是|身为)(一个|一名|一款|个)?(基于文本的|大型|人工智能|ai|openai的|由openai开发的)*"
    r"(ai|人工智能|语言模型|聊天机器人|ai助手|人工智能助手|虚拟助手)"
    r"|(人工智能|ai)语言模型|chatgpt|openai|gpt-?3|gpt-?4"
    r"|\bas an? (ai|artificial intelligence|language model|large language model)\b"
    r"|\bi(?: am|'m) (?:just |only )?an? (ai|artificial intelligence|language model|large language model)\b",
    re.IGNORECASE)
"""An answer in which the generating model speaks about itself (BELLE removed these)."""

_MEDIA = r"(?:图片|图像|照片|相片|截图|插图|配图|图表|视频|音频|录音|录像|语音|链接|网址|网页|二维码)"

MULTIMODAL = re.compile(
    r"(?:这|那|此|该|以下|下面|下列|上面|附上|所附|给定|给出|提供|上传|附带|如下)的?一?(?:张|段|个|幅|份|条|篇)?" + _MEDIA
    + r"|(?:这|那|此|该|以下|下面|上面)[张幅]图"
    r"|(?:附上|所附|上传|附带|附件中)的?(?:文件|文档|表格|资料)"
    r"|(?:根据|观察|描述|看|识别|分析)(?:这|以下|下面|该)?一?(?:张|幅|段|个)?(?:图片|图像|照片|图表|视频|音频|录音)"
    r"|(?:画|生成|制作|拍|绘制|录制|剪辑)一?(?:张|幅|段|个)(?:图|图片|画|照片|视频|音频|海报)"
    r"|如图|附件|附图|图中所示|看图|超链接"
    r"|https?://|www\.|\.(?:jpe?g|png|gif|bmp|mp3|mp4|wav|avi|pdf|docx?|xlsx?|pptx?)\b"
    r"|\b(?:this|these|that|the following|the attached|attached|the given|the above|uploaded) "
    r"(?:images?|pictures?|photos?|photographs?|videos?|audio|recordings?|files?|links?|urls?|charts?|graphs?"
    r"|screenshots?)\b"
    r"|\b(?:draw|generate|create|make) an? (?:image|picture|photo|video|drawing)\b",
    re.IGNORECASE)
"""An instruction about an image, link, file, audio or video that a text-only model cannot see."""

TRANSLATION_OR_CODE = re.compile(
    r"翻译|译成|译为|译作|英文|英语|english|translat|代码|编程|程序|函数|脚本|正则|python|java|c\+\+|sql|html|css"
    r"|shell|bash|命令行|json|xml|markdown|latex", re.IGNORECASE)
"""An instruction for which an answer in English (or code) is expected."""

CODE_LIKE = re.compile(r"```|\bdef |\bclass |\breturn\b|\bimport |#include|\bfunction\b|=>|;\s*$|\{\s*$",
                       re.MULTILINE)

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

_LATIN = re.compile(r"[A-Za-z]")


def _letters(text: str) -> tuple[int, int]:
    return len(_CJK.findall(text)), len(_LATIN.findall(text))


def language_mismatch(instruction: str, output: str, category: str = "") -> bool:
    """A Chinese instruction answered in English (translation and code tasks excepted).

    >>> language_mismatch("介绍一下长城。", "The Great Wall is a series of fortifications in China.")
    True
    >>> language_mismatch("把这句话翻译成英文：我喜欢猫。", "I like cats.")
    False
    >>> language_mismatch("介绍一下长城。", "长城是中国古代的军事防御工程。")
    False
    """
    if category in ("translation", "code") or TRANSLATION_OR_CODE.search(instruction):
        return False
    zh_in, en_in = _letters(instruction)
    if zh_in < 2 or zh_in < en_in:
        return False
    if CODE_LIKE.search(output):
        return False
    zh_out, en_out = _letters(output)
    return en_out >= 20 and zh_out <= 0.1 * (zh_out + en_out)


def check_reason(instruction: str, input: str, output: str, category: str = "", *,
                 min_instruction_chars: int | None = None, max_instruction_chars: int | None = None,
                 max_input_chars: int | None = None, max_question_chars: int | None = None,
                 min_output_chars: int | None = None, max_output_chars: int | None = None,
                 chinese_instruction: bool = False) -> str | None:
    """The reason of the first check a task fails, or None; a limit left None is not checked.

    The cleaning checks of the ``quality`` strategy (``quality_reason``) and of the self-instruct
    stage (``helpers.selfinstruct.filters.filter_reason``), written once and run in this order, each
    caller with its own limits: ``self_reference``, ``multimodal``, the character limits
    (``instruction_too_short``, ``instruction_too_long``, ``input_too_long``,
    ``question_too_long`` for instruction + newline + input, ``output_too_short`` on the
    stripped output, ``output_too_long``), then ``language_mismatch``, which with
    ``chinese_instruction`` also takes an instruction with fewer than two Chinese characters.

    >>> check_reason("介绍一下长城。", "", "长城是中国古代的军事防御工程。", max_output_chars=10)
    'output_too_long'
    >>> [check_reason("Describe the Great Wall.", "", "The Great Wall is long.", chinese_instruction=c)
    ...  for c in (False, True)]
    [None, 'language_mismatch']
    """
    question = f"{instruction}\n{input}"
    if SELF_REFERENCE.search(output):
        return "self_reference"
    if MULTIMODAL.search(question):
        return "multimodal"
    if min_instruction_chars is not None and len(instruction) < min_instruction_chars:
        return "instruction_too_short"
    if max_instruction_chars is not None and len(instruction) > max_instruction_chars:
        return "instruction_too_long"
    if max_input_chars is not None and len(input) > max_input_chars:
        return "input_too_long"
    if max_question_chars is not None and len(question) > max_question_chars:
        return "question_too_long"
    if min_output_chars is not None and len(output.strip()) < min_output_chars:
        return "output_too_short"
    if max_output_chars is not None and len(output) > max_output_chars:
        return "output_too_long"
    if chinese_instruction and _letters(instruction)[0] < 2 or language_mismatch(instruction, output, category):
        return "language_mismatch"
    return None
