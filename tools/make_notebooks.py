"""Writes notebooks/*.ipynb from the cell sources below (kept so notebook edits stay reviewable).

Run ``python tools/make_notebooks.py`` after editing; the notebooks are stored without outputs.
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NB = Path(__file__).resolve().parents[1] / "notebooks"

PARAMS = '''import os

config = os.environ.get("STUDY_CONFIG", "configs/default.yaml")  # study config, relative to the checkout
root = os.environ.get("STUDY_ROOT") or None  # where data/ and reports/ go; None: the checkout'''
SCALE = '''
scale = None  # which model: a scale such as "600", "quality-600" in a strategy grid, or "base"; None: the last model'''
SETUP = '''import time

import pandas as pd
from IPython.display import Image, display

from helpers.config import load_config, study_dir
from helpers.lock import hold_in_kernel

t0 = time.perf_counter()
cfg = load_config(config)
sd = study_dir(cfg, root)
hold_in_kernel(sd)  # under `make study`: a rerun waits for this kernel; by hand: warns of a batch run
print(f"study {cfg.study}: files under {sd}")'''
SETUP_SCALE = SETUP + '''
scale = str(scale or cfg.models[-1])
print(f"model: {scale}")'''
TIMER = '''print(f"stage time: {time.perf_counter() - t0:.0f} s")'''


def notebook(title: str, intro: str, cells: list, per_scale: bool):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = new_code_cell(PARAMS + (SCALE if per_scale else ""))
    params.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell(f"# {title}\n\n{intro}"), params,
                new_code_cell(SETUP_SCALE if per_scale else SETUP)]
    for c in cells:
        nb.cells.append(new_markdown_cell(c[3:]) if c.startswith("md:") else new_code_cell(c))
    nb.cells.append(new_code_cell(TIMER))
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating an unchanged notebook changes nothing
    return nb


NOTEBOOKS = {
    "00_selfinstruct": notebook(
        "00 · Self-instruct: generating the instruction pool (optional)",
        "With `data.source: generate` the study's pool is written here, the paper's way: a teacher model behind any "
        "OpenAI-compatible endpoint (`selfinstruct.base_url`, `selfinstruct.model`) is shown "
        "`selfinstruct.examples_per_request` of our Chinese seed tasks (`selfinstruct.seeds_file`) per request and asked "
        "for `selfinstruct.tasks_per_request` new ones (`selfinstruct.prompt_file`). Replies are parsed, filtered "
        "(length limits, image/link/file/audio tasks, the model talking about itself, language mismatch), "
        "de-duplicated against the seeds and everything kept so far (MinHash LSH) and labelled with a use case, "
        "until `selfinstruct.target` items are kept in `generated.jsonl`; every dropped task is in "
        "`generated_dropped.jsonl` with its reason. Every reply is cached: a rerun after a kill continues and never "
        "sends a request twice. The API key is read from the environment variable named by "
        "`selfinstruct.api_key_env` and never enters this notebook. Other sources skip this stage.",
        [
            "from helpers import selfinstruct\n\n"
            "if cfg.data.source == \"generate\":\n"
            "    stats = selfinstruct.generate_pool(cfg, sd)\n"
            "else:\n"
            "    stats = selfinstruct.read_stats(sd)\n"
            "    print(f\"data.source is {cfg.data.source!r}: this study does not generate its pool (the runner skips \"\n"
            "          f\"this notebook); set data.source: generate and a selfinstruct: section to use it\")",
            "md:## Kept and dropped tasks, per reason (the first check that fails names the reason)",
            "pd.DataFrame(selfinstruct.reason_table(stats))",
            "md:## Requests, tokens and cost",
            "if stats:\n"
            "    print(f\"teacher {stats['teacher']}: {stats['tokens']['prompt']} input + {stats['tokens']['completion']} \"\n"
            "          f\"output tokens, ${stats['cost']:.4f}; replies ending at the token limit: \"\n"
            "          f\"{stats['finish_reasons'].get('length', 0)} of {stats['requests']['processed']}\")\n"
            "    display(pd.Series(stats[\"requests\"], name=\"requests\").to_frame())",
            "md:## Composition of the generated data: kept items per use case, and who labelled them",
            "if stats:\n"
            "    comp = pd.Series(stats[\"kept_by_category\"], name=\"items\").to_frame()\n"
            "    comp[\"share\"] = (comp[\"items\"] / comp[\"items\"].sum()).round(3)\n"
            "    ax = comp[\"items\"].plot.barh(figsize=(6, 4))\n"
            "    ax.invert_yaxis()\n"
            "    ax.set_xlabel(\"kept items\")\n"
            "    display(comp)\n"
            "    print(\"labelled by:\", stats[\"label_by\"])",
            "md:## A few kept items per use case",
            "pd.DataFrame(selfinstruct.examples(sd, per_category=2))",
            "md:## One dropped task per reason",
            "pd.DataFrame(selfinstruct.dropped_examples(sd))",
        ], per_scale=False),
    "01_data": notebook(
        "01 · Instruction data",
        "Builds the instruction pool, the eval set and the nested training subsets "
        "(`pool.jsonl`, `eval.jsonl`, `subsets/<scale>.jsonl`, `data_stats.json`): loads the sources, "
        "stops on eval questions found verbatim in the pool, removes duplicates and pool items that overlap "
        "eval items (files and datasets; the built-in suite only reports them), then orders the pool by the "
        "study's selection `strategy`. Every smaller subset is contained in every larger one; every removed "
        "item is listed in `removed.jsonl` with its reason.",
        [
            "from helpers import data\n\nstats = data.prepare(cfg, sd)\n"
            "print(f\"pool: {stats['pool']['n']} items, eval: {stats['eval']['n']} items, strategy: {stats['strategy']}\")",
            "md:## What each filter found and removed",
            "pd.DataFrame(data.filter_table(stats))",
            "from helpers.files import read_jsonl\n\nremoved = pd.DataFrame(read_jsonl(sd / \"removed.jsonl\"))\n"
            "removed.groupby([\"step\", \"reason\"]).size().rename(\"items\").to_frame() if len(removed) else \"nothing removed\"",
            "md:## Composition of each training subset (items per use case)",
            "composition = pd.DataFrame({s: v[\"categories\"] for s, v in stats[\"subsets\"].items()}).fillna(0).astype(int)\n"
            "composition.loc[\"total\"] = composition.sum()\ncomposition",
            "from helpers import figures\n\ndisplay(Image(str(figures.composition(stats, sd / \"figures\" / \"composition.png\"))))",
            "md:## Length per use case in the largest subset (tokens of the base model where its tokenizer is at hand, "
            "else characters)",
            "print(f\"lengths in {stats['length_unit']}\")\nlengths = pd.DataFrame(data.length_table(stats)).set_index(\"category\")\nlengths",
            "unit = \"tokens\" if \"tokens_mean\" in lengths else \"chars\"\n"
            "ax = lengths[[f\"{unit}_mean\", f\"{unit}_max\"]].plot.barh(figsize=(7, 4.5))\n"
            "ax.set_xlabel(f\"length of instruction + input + output ({unit})\")\nax.set_ylabel(\"use case\")\n"
            "ax.legend([\"mean\", \"max\"]);",
            "md:## Eval items per use case, and a few examples",
            "eval_items = pd.DataFrame(read_jsonl(sd / \"eval.jsonl\"))\n"
            "eval_items.groupby(\"category\").size().rename(\"items\").to_frame().T",
            "eval_items.groupby(\"category\").head(1)[[\"category\", \"question\", \"reference\"]]",
            "pd.DataFrame(read_jsonl(sd / \"subsets\" / f\"{cfg.models[1]}.jsonl\")).head(12)",
        ], per_scale=False),
    "02_finetune": notebook(
        "02 · Fine-tuning one scale",
        "Trains the base model on `subsets/<scale>.jsonl` (LoRA by default, loss on the response only) "
        "and saves it to `models/<scale>/` with its `train_log.jsonl`. In a strategy grid the models are "
        "named `<strategy>-<scale>`; under the prefix schedule one run per strategy saves all of its scales.",
        [
            "import subprocess\n\nfrom helpers.finetune import launch_command, train\n\n"
            "if cfg.train.schedule == \"prefix\":\n"
            "    print(\"prefix schedule: one pass over the largest subset saves every scale at its boundary\")\n"
            "if scale in cfg.model.checkpoints:\n"
            "    print(f\"scale {scale}: evaluating the existing checkpoint {cfg.model.checkpoints[scale]}; no training\")\n"
            "elif cfg.train.num_processes > 1:\n"
            "    cmd = launch_command(cfg, config, root, scale)\n"
            "    print(\" \".join(cmd), flush=True)\n"
            "    subprocess.run(cmd, check=True)\n"
            "else:\n"
            "    train(cfg, sd, scale)",
            "md:## Training loss of every scale trained so far",
            "import matplotlib.pyplot as plt\n\nfrom helpers import figures\n\nfig, ax = plt.subplots(figsize=(7, 4))\n"
            "for m in cfg.models[1:]:\n"
            "    log = sd / \"models\" / m / \"train_log.jsonl\"\n"
            "    if log.exists():\n"
            "        df = pd.read_json(log, lines=True)\n"
            "        ax.plot(df[\"tokens_seen\"], df[\"loss\"], label=figures.model_label(m))\n"
            "ax.set_xlabel(\"training tokens seen\")\nax.set_ylabel(\"loss (response tokens)\")\nax.legend()\nplt.show()",
            "last = cfg.strategy_models(scale)[-1] if scale in cfg.strategies else scale  # prefix runs of a grid\n"
            "summary = sd / \"models\" / last / \"train_summary.json\"\n"
            "if summary.exists():\n    print(summary.read_text())",
        ], per_scale=True),
    "03_generate": notebook(
        "03 · Answers of one model",
        "Answers every eval item with one model (`base` is the untuned model, the zero-data point) "
        "in length-sorted batches, greedy, stopping at EOS or the next `Human:` turn. Writes `answers/<model>.jsonl`.",
        [
            "from helpers.generate import generate_answers\nfrom helpers.files import read_jsonl\n\n"
            "path = generate_answers(cfg, scale, sd)\nanswers = pd.DataFrame(read_jsonl(path))\n"
            "print(f\"{len(answers)} answers, {answers['truncated'].mean():.0%} hit the token limit\")",
            "md:## One answer per use case",
            "questions = pd.DataFrame(read_jsonl(sd / \"eval.jsonl\")).set_index(\"id\")\n"
            "sample = answers.groupby(\"category\").head(1).set_index(\"id\")\n"
            "sample.join(questions[[\"question\", \"reference\"]])[[\"category\", \"question\", \"reference\", \"answer\"]]",
        ], per_scale=True),
    "04_judge": notebook(
        "04 · Judging one model's answers",
        "Scores every answer 0..1 (`judgments/<model>.jsonl`, one row per item per judge run). "
        "The default judge is offline: it checks each answer against the item's reference and machine-checkable `check`. "
        "With `judge.kind: openai` an LLM behind any OpenAI-compatible endpoint scores each answer with the rubric of its "
        "use case (`judge.prompts_file`), `judge.runs` times; every reply is cached under `judge_cache/`, so a rerun "
        "sends only the requests that never got a reply. The API key is read from the environment variable named by "
        "`judge.api_key_env` and never enters this notebook.",
        [
            "from helpers.judge import judge_answers\nfrom helpers.files import read_jsonl\n\n"
            "path = judge_answers(cfg, scale, sd)\njudged = pd.DataFrame(read_jsonl(path))\n"
            "judged = judged.merge(pd.DataFrame(read_jsonl(sd / \"eval.jsonl\"))[[\"id\", \"category\"]], on=\"id\")\n"
            "print(f\"judge: {judged['judge'].iloc[0]}, {len(judged)} judgments, {judged['score'].isna().sum()} null\")",
            "md:## Mean score per use case",
            "judged.groupby(\"category\")[\"score\"].agg([\"mean\", \"count\"]).T.round(3)",
            "judged.sort_values(\"score\").groupby(\"category\").head(1)[[\"category\", \"id\", \"score\", \"raw\"]]",
            "md:## Judge tokens and cost; judgments without a score (null, never counted as 0)",
            "usage = pd.DataFrame([u or {} for u in judged[\"usage\"]])\n"
            "if \"requests\" in usage:\n"
            "    print(usage[[\"requests\", \"prompt_tokens\", \"completion_tokens\", \"cost\"]].sum().to_string())\n"
            "else:\n"
            "    print(\"offline judge: no API requests, no cost\")\n"
            "nulls = judged[judged[\"score\"].isna()]\n"
            "nulls[[c for c in (\"category\", \"id\", \"run\", \"reason\", \"raw\") if c in nulls]]",
        ], per_scale=True),
    "05_analysis": notebook(
        "05 · Analysis: what changed with more data, per use case",
        "Category × model scores with 95% bootstrap confidence intervals over items, the paper's Figure 1, "
        "score against training examples, trends per use case and a comparison with the paper's findings. "
        "Writes `results.csv`, `results.json` and the figures.",
        [
            "from helpers import analysis, figures\n\n"
            "models = [m for m in cfg.models if (sd / \"judgments\" / f\"{m}.jsonl\").exists()]\n"
            "missing = sorted(set(cfg.models) - set(models))\n"
            "if missing:\n    print(f\"not judged yet, left out: {missing}\")\n"
            "results = analysis.write_results(sd, models, n_boot=cfg.analysis.n_boot, improve=cfg.analysis.improve_threshold)\n"
            "table = results[\"table\"]",
            "md:## Mean score per use case and model (95% CI over items); the headline overall is the mean over use cases",
            "analysis.pretty_table(table)",
            "display(Image(str(figures.figure1(table, sd / \"figures\" / \"figure1.png\"))))",
            "display(Image(str(figures.score_curves(table, sd / \"figures\" / \"score_curves.png\"))))",
            "md:## Trend per use case and the paper's findings",
            "pd.DataFrame(results[\"trends\"])",
            "pd.DataFrame(results[\"paper_comparison\"])",
            "md:## Selection strategies at equal data (a study with a list of strategies): each strategy minus "
            "random on the same items, paired bootstrap 95% CI",
            "versus = pd.DataFrame(results[\"strategy_comparison\"])\n"
            "versus.pivot_table(index=\"category\", columns=[\"strategy\", \"examples\"], values=\"diff\").round(3) "
            "if len(versus) else \"one selection strategy: nothing to compare\"",
            "md:## How much the judge's runs agree (one run: nothing to compare)",
            "pd.DataFrame(results[\"judge_spread\"])",
            "display(Image(str(figures.judge_spread(results[\"judge_spread\"], sd / \"figures\" / \"judge_spread.png\"))))",
            "md:## Training loss and data composition",
            "display(Image(str(figures.loss_curves(sd, cfg.models[1:], sd / \"figures\" / \"loss_curves.png\"))))",
            "from helpers.files import read_json\n\n"
            "display(Image(str(figures.composition(read_json(sd / \"data_stats.json\"), sd / \"figures\" / \"composition.png\"))))",
            "md:## Lowest-scoring items at the largest scale, beside the base model's answer",
            "pd.DataFrame(results[\"lowest_items\"])",
        ], per_scale=False),
}

if __name__ == "__main__":
    for name, nb in NOTEBOOKS.items():
        nbformat.validate(nb)
        nbformat.write(nb, NB / f"{name}.ipynb")
        print(f"wrote notebooks/{name}.ipynb")
