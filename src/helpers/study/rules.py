"""The config's cross-field rules: settings that no stage would read.

``ignored_settings`` reads several sections together and makes a setting without effect an error (the
study's validator in ``helpers.study.config`` runs it). It takes the validated study config (``StudyConfig``);
this module imports no config class, since the schema imports it.

Repeated judge runs are not judged here. Several runs of the offline judge are an error below (it is
deterministic and runs once), but several runs of an LLM judge at ``temperature: 0`` are the paper's own
setting (BELLE scored with gpt-3.5-turbo at temperature 0.0, three runs averaged): a server answers the same
request differently from run to run (batching, floating point), and the runs' spread measures that. Whether a
given server does is known only from its replies, so the report says so when every run agreed on every item
(``helpers.analysis.report``), rather than the config guessing in advance.
"""
from __future__ import annotations

from pydantic import BaseModel

from helpers.study.paths import resolve


def changed_fields(section: BaseModel, skip: tuple[str, ...] = ()) -> list[str]:
    """The fields of ``section`` the config sets (pydantic's ``model_fields_set``) to a value other than
    the default: a setting written out at its default changes nothing, so it is never an error to keep it."""
    fields = type(section).model_fields
    return [name for name in fields if name in section.model_fields_set and name not in skip
            and getattr(section, name) != fields[name].get_default(call_default_factory=True)]


def _keys(section: str, names: list[str]) -> str:
    return ", ".join(f"{section}.{n}" for n in names)


def ignored_settings(cfg) -> list[str]:
    """Settings the config sets that no stage would read, each with what makes it so and how to fix it.

    A setting with no effect is an error, not silence: a study that trains on the built-in suite while
    the user believes it read their ``data.train_files``, or an offline judge that ignores the
    ``judge.model`` written for it, produces numbers that answer another question than the one asked.
    Only settings given a value other than the default count (``changed_fields``), so a config may
    spell out defaults. Each problem starts with the key, as every config error does.
    """
    d, out = cfg.data, []
    builtin_eval = d.source in ("builtin", "generate") and not d.eval_file
    if d.source == "builtin" and d.train_files:
        out.append("data.train_files: has no effect with data.source: builtin (the pool is the built-in suite); "
                   "set data.source: file (local files) or hf (hub datasets) to train on them, or remove it")
    if d.source == "generate" and d.train_files:
        out.append("data.train_files: has no effect with data.source: generate (the pool is generated.jsonl of the "
                   "self-instruct stage); set data.source: file to train on these files, or remove it")
    if d.source != "builtin" and "pool_size" in changed_fields(d):
        out.append(f"data.pool_size: has no effect with data.source: {d.source} (it sizes the built-in suite's pool "
                   f"only); remove it")
    if not builtin_eval and "eval_per_category" in changed_fields(d):
        why = "the eval set is data.eval_file" if d.eval_file else f"data.source: {d.source} reads data.eval_file"
        out.append(f"data.eval_per_category: has no effect here ({why}; it sizes the built-in suite's eval split "
                   f"only); remove it")
    if d.revision is not None:
        hub = [f for f in d.train_files if not resolve(f).exists()]
        if d.source in ("builtin", "generate"):
            out.append(f"data.revision: has no effect with data.source: {d.source} (it pins a Hugging Face dataset "
                       "in data.train_files); remove it")
        elif not hub:
            out.append(f"data.revision: has no effect: every data.train_files entry is a local file or folder "
                       f"({', '.join(d.train_files)}), and only a Hugging Face dataset has revisions; remove it")
        elif len(hub) > 1:
            out.append(f"data.revision: pins one Hugging Face dataset, but data.train_files names {len(hub)} "
                       f"({', '.join(hub)}) and a revision belongs to one repository; keep one hub dataset per "
                       "study, or download the others and list them as local files")
    if d.source == "builtin" and not d.eval_file and d.category_map:
        out.append("data.category_map: has no effect with data.source: builtin and no data.eval_file (the built-in "
                   "suite uses the canonical use-case names; the map is for labels in files); remove it")
    if "quality" not in cfg.strategies and "quality" in changed_fields(d):
        out.append(f"data.quality: has no effect without the quality strategy (strategy: {cfg.strategy}); "
                   "add quality to strategy, or remove it")
    if cfg.train.method == "full" and "lora" in changed_fields(cfg.train):
        out.append("train.lora: has no effect with train.method: full; set method: lora, or remove it")
    sampling = [n for n in changed_fields(cfg.generate) if n in ("temperature", "top_p")]
    if not cfg.generate.do_sample and sampling:
        out.append(f"{_keys('generate', sampling)}: {'has' if len(sampling) == 1 else 'have'} no effect with "
                   "generate.do_sample: false (greedy decoding); set do_sample: true, or remove "
                   f"{'it' if len(sampling) == 1 else 'them'}")
    if cfg.generate.backend != "hf" and "dtype" in changed_fields(cfg.generate):
        out.append(f"generate.dtype: has no effect with generate.backend: {cfg.generate.backend} (it sets the hf "
                   "backend's weights; vllm has generate.vllm.dtype, a server its own); remove it")
    judges = [("judge", cfg.judge)] + [(f"judge.others.{n}", j) for n, j in cfg.judge.others.items()]
    for section, j in judges:
        if j.kind != "offline" and "code_execution" in changed_fields(j):
            out.append(f"{section}.code_execution: has no effect with {section}.kind: {j.kind} (only the offline judge "
                       "runs an answer's code); remove it")
        if j.kind == "offline":
            judge = changed_fields(j, skip=("kind", "code_execution", "others"))
            if judge:
                out.append(f"{_keys(section, judge)}: {'has' if len(judge) == 1 else 'have'} no effect with "
                           f"{section}.kind: offline (the offline judge calls no model, uses no prompts and runs "
                           f"once); set {section}.kind: openai to judge with an LLM, or remove "
                           f"{'it' if len(judge) == 1 else 'them'}")
    if d.source != "generate":
        si = changed_fields(cfg.selfinstruct)
        if si:
            out.append(f"{_keys('selfinstruct', si)}: {'has' if len(si) == 1 else 'have'} no effect without "
                       "data.source: generate (the self-instruct stage runs only then); set data.source: generate, "
                       f"or remove {'it' if len(si) == 1 else 'them'}")
    return out

