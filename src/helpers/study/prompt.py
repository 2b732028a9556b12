"""The one prompt template of the study, BELLE's two-turn shape.

Training and generation both build prompts here and nowhere else, so the text the
model learns to continue is exactly the text it is asked to continue; and every generate
backend ends an answer where the next turn starts (``cut_at_stop``), so their answers differ
only where the models' tokens do.
"""
from __future__ import annotations

TEMPLATE = "Human: {question}\n\nAssistant: "
"""``question`` is the instruction, followed by a newline and the input when there is one."""

STOP = "\nHuman:"
"""Generation stops when the model starts the next human turn."""


def question(instruction: str, input: str = "") -> str:
    """Join instruction and input the way BELLE's ``Human: {instruction}\\n{input}`` does."""
    return f"{instruction}\n{input}" if input else instruction


def format_prompt(instruction: str, input: str = "") -> str:
    return TEMPLATE.format(question=question(instruction, input))


def cut_at_stop(text: str) -> str:
    """The answer ends where the model starts the next ``Human:`` turn.

    >>> cut_at_stop(" 答案：3\\nHuman: 再来一个")
    '答案：3'
    """
    i = text.find(STOP.strip())
    return (text[:i] if i >= 0 else text).strip()
