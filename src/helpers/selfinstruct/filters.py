"""The checks a generated task must pass before it is kept (the first that fails names the reason)."""
from __future__ import annotations

FILTER_REASONS = ("self_reference", "multimodal", "instruction_too_short", "instruction_too_long", "input_too_long",
                  "output_too_short", "output_too_long", "language_mismatch")


def filter_reason(task: dict, s) -> str | None:
    """The first filter ``task`` fails, or None. ``s``: the config's ``selfinstruct`` section (its limits).

    ``task`` is ``{instruction, input, output, category}``. Pure: no I/O, no logging.

    >>> from helpers.study.config import SelfInstructConfig
    >>> s = SelfInstructConfig()
    >>> ok = {"instruction": "介绍一下长城。", "input": "", "output": "长城是中国古代的军事防御工程。", "category": "open_qa"}
    >>> [filter_reason({**ok, **change}, s) for change in [
    ...     {},
    ...     {"output": "作为一个AI语言模型，我没有去过长城。"},
    ...     {"instruction": "描述这张图片里的风景。"},
    ...     {"instruction": "写诗"},
    ...     {"output": "好" * 2001},
    ...     {"output": "The Great Wall is a series of fortifications built across northern China."},
    ...     {"instruction": "Describe the Great Wall."}]]
    [None, 'self_reference', 'multimodal', 'instruction_too_short', 'output_too_long', 'language_mismatch', 'language_mismatch']
    """
    from helpers.study.cleaning import check_reason

    return check_reason(task["instruction"], task["input"], task["output"], task.get("category", ""),
                        min_instruction_chars=s.min_instruction_chars, max_instruction_chars=s.max_instruction_chars,
                        max_input_chars=s.max_input_chars, min_output_chars=s.min_output_chars,
                        max_output_chars=s.max_output_chars, chinese_instruction=True)
