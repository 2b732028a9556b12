"""Command line: ``python -m helpers run --config FILE [--set KEY=VALUE ...] [--force] [--only STAGE] [-v] [--dry-run [--tflops T]]``,
``python -m helpers status [--config FILE]``, ``python -m helpers clean --stale [--config FILE]``,
``python -m helpers rehearse [--config FILE]`` (the config's code path on the CPU at shrunk sizes),
``python -m helpers validate --kind {train,eval,seeds,judge-prompts} FILE``;
``train`` and ``launch`` are what ``accelerate launch`` and a Slurm job run, ``answer`` what a task of the generate
stage's Slurm job array runs."""
from __future__ import annotations

import argparse
import sys

from helpers.study.loading import ConfigError


def end_process_group() -> None:
    """Every rank leaves the process group together before the interpreter exits. Left to exit, a rank of a
    DeepSpeed run on the CPU sometimes aborted ("terminate called without an active exception": a
    communication thread still running) after the models were published, failing the launch."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every stage of a study (skipping those up to date)")
    run.add_argument("--config", required=True, help="study config, e.g. configs/default.yaml")
    run.add_argument("--root", default=None, help="where data/ and reports/ go (default: the checkout)")
    run.add_argument("--force", action="store_true", help="rerun stages even when up to date")
    run.add_argument("--only", default=None, help="run only this stage (selfinstruct, data, finetune, generate, judge, analysis)")
    run.add_argument("--dry-run", action="store_true", help="print the plan, a compute estimate and the preflight checks; run nothing")
    run.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE",
                     help="override a config value, e.g. --set train.lr=1e-4 (repeatable; recorded in the manifest)")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="stream what every stage prints to the terminal too (also STUDY_VERBOSE=1); without it, one "
                          "line per stage execution, a progress bar on a terminal, the output in data/<study>/logs/")
    run.add_argument("--tflops", type=float, default=None,
                     help="with --dry-run: sustained TFLOP/s per GPU for the training time (default 125: 40%% of an A100)")
    status = sub.add_parser("status", help="per stage and model: up to date, stale (and why) or missing")
    status.add_argument("--config", default="configs/default.yaml", help="study config (default: configs/default.yaml)")
    status.add_argument("--root", default=None, help="where data/ and reports/ are (default: the checkout)")
    status.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE",
                        help="the overrides the study runs with (repeatable)")
    clean = sub.add_parser("clean", help="remove the model and checkpoint folders a rerun moved aside")
    clean.add_argument("--stale", action="store_true", required=True,
                       help="remove models/*.stale-* (moved aside by a rerun: another key); `make clean` removes everything")
    clean.add_argument("--config", default="configs/default.yaml", help="study config (default: configs/default.yaml)")
    clean.add_argument("--root", default=None, help="where data/ is (default: the checkout)")
    train = sub.add_parser("train", help="train one scale (what accelerate launch runs on many devices)")
    train.add_argument("--config", required=True)
    train.add_argument("--root", default=None)
    train.add_argument("--scale", default=None, help="the scale to train (train.schedule: separate)")
    train.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE")
    reh = sub.add_parser("rehearse", help="run a config's own code path end to end on the CPU at shrunk sizes")
    reh.add_argument("--config", default="configs/paper.yaml")
    reh.add_argument("--root", default=None, help="the rehearsal's folder (default: a new temporary one)")
    reh.add_argument("--tflops", type=float, default=125.0, help="sustained TFLOP/s per GPU for the projections")
    reh.add_argument("--gpu-gib", type=float, default=80.0, help="memory of one GPU, for the peak-memory check")
    reh.add_argument("--gen-tps", type=float, default=1500.0, help="generated tokens/s per GPU assumed for generation")
    reh.add_argument("--small", action="store_true", help="two scales, the hf backend for vllm (what make test-all runs)")
    launch = sub.add_parser("launch", help="inside a Slurm job, on every node: this node's accelerate launch of train")
    launch.add_argument("--config", required=True)
    launch.add_argument("--root", default=None)
    launch.add_argument("--scale", default=None)
    launch.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE")
    answer = sub.add_parser("answer", help="inside a task of the generate job array (generate.launcher: slurm): "
                                           "one model's answers")
    answer.add_argument("--config", required=True)
    answer.add_argument("--root", default=None)
    answer.add_argument("--model", required=True, help="base or a model of the study, e.g. 640 or quality-640")
    answer.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE")
    check = sub.add_parser("validate", help="load a data file, print a JSON summary; exit 2 on bad input")
    check.add_argument("--kind", required=True, choices=("train", "eval", "seeds", "judge-prompts"))
    check.add_argument("file", help="a JSON/JSONL/parquet file (train: also a data folder or a hub dataset name)")
    check.add_argument("--config", default=None, help="take data.category_map from this study config")
    check.add_argument("--map", action="append", default=[], metavar="LABEL=CATEGORY",
                       help="map an extra category label (repeatable)")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from helpers.analysis.report import build_index
            from helpers.analysis.summary import summary_lines
            from helpers.estimate import plan_lines
            from helpers.preflight import check_study
            from helpers.study.lock import StudyBusy
            from helpers.study.runner import StageFailed, run_study

            if args.tflops is not None and (not args.dry_run or args.tflops <= 0):
                raise ValueError("--tflops: only with --dry-run (it sets the training time estimate), and above 0")
            try:
                def estimate(cfg, sd, out):  # the dry run's figures, and with a launcher slurm its job scripts
                    from helpers.finetune.slurm import print_job_scripts as training_jobs
                    from helpers.generate.slurm import print_job_scripts as answer_jobs

                    plan_lines(cfg, sd, out, tflops=args.tflops)
                    training_jobs(args.config, args.root, args.overrides, out)
                    answer_jobs(args.config, args.root, args.overrides, out)

                run_study(args.config, root=args.root, force=args.force, only=args.only, dry_run=args.dry_run,
                          overrides=args.overrides, report=build_index, preflight=check_study, estimate=estimate,
                          summary=summary_lines, verbose=True if args.verbose else None)
            except (StageFailed, StudyBusy) as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
        elif args.command == "status":
            from helpers.study.runner import status

            status(args.config, root=args.root, overrides=args.overrides)
        elif args.command == "clean":
            from helpers.study.aside import remove_stale
            from helpers.study.loading import load_config, study_dir

            remove_stale(study_dir(load_config(args.config), args.root))
        elif args.command == "train":
            from helpers.finetune.stage import run
            from helpers.study.loading import load_config, study_dir
            from helpers.study.lock import hold_in_kernel

            cfg = load_config(args.config, args.overrides)
            hold_in_kernel(study_dir(cfg, args.root))  # launched by a notebook under the runner: a rerun waits for it
            run(cfg, study_dir(cfg, args.root), args.scale)
            end_process_group()
        elif args.command == "rehearse":
            from helpers.rehearse.run import rehearse

            return rehearse(args.config, args.root, args.tflops, args.gpu_gib, args.gen_tps, small=args.small)
        elif args.command == "launch":
            import os

            from helpers.finetune.launch import launch_command, slurm_node
            from helpers.study.loading import load_config

            cmd = launch_command(load_config(args.config, args.overrides), args.config, args.root, args.scale,
                                 args.overrides, node=slurm_node())
            print(" ".join(cmd), flush=True)
            os.execv(cmd[0], cmd)  # the launcher takes this process's place: Slurm's signals reach it directly
        elif args.command == "answer":
            from helpers.generate.stage import run
            from helpers.study.loading import load_config, study_dir
            from helpers.study.lock import hold_in_kernel

            cfg = load_config(args.config, args.overrides)
            if args.model not in cfg.models:
                raise ValueError(f"--model {args.model}: not a model of study {cfg.study} ({', '.join(cfg.models)})")
            hold_in_kernel(study_dir(cfg, args.root))  # started by the notebook's job array: a rerun waits for it
            run(cfg, study_dir(cfg, args.root), [args.model])
        elif args.command == "validate":
            import json

            from helpers.validate import validate

            extra = {}
            if args.config:
                from helpers.study.loading import load_config

                extra.update(load_config(args.config).data.category_map)
            for item in args.map:
                label, sep, target = item.rpartition("=")
                if not sep or not label:
                    raise ValueError(f"--map {item!r}: expected LABEL=CATEGORY")
                extra[label] = target
            print(json.dumps(validate(args.kind, args.file, extra), ensure_ascii=False, indent=2))
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
