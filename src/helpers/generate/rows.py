"""What every generate backend shares: where an answer ends, and the stage's error.

The hf, vllm and server backends all cut a continuation at the next ``Human:`` turn the same
way, so their answers files differ only where the models' tokens differ. This module imports
nothing heavy: the vLLM worker (``helpers.generate.vllm_worker``) runs it in vLLM's own
environment, and the backends import it without importing each other.
"""
from __future__ import annotations

from helpers.study.prompt import STOP


class GenerateError(RuntimeError):
    """The generate stage cannot go on; the message names the setting to fix. Stored answers stay."""


def cut_at_stop(text: str) -> str:
    """The answer ends where the model starts the next ``Human:`` turn.

    >>> cut_at_stop(" 答案：3\\nHuman: 再来一个")
    '答案：3'
    """
    i = text.find(STOP.strip())
    return (text[:i] if i >= 0 else text).strip()
