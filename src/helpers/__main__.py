"""Command line: ``python -m helpers run --config FILE [--force] [--only STAGE] [--dry-run]``."""
from __future__ import annotations

import argparse
import sys

from helpers.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every stage of a study (skipping those up to date)")
    run.add_argument("--config", required=True, help="study config, e.g. configs/default.yaml")
    run.add_argument("--root", default=None, help="where data/ and reports/ go (default: the checkout)")
    run.add_argument("--force", action="store_true", help="rerun stages even when up to date")
    run.add_argument("--only", default=None, help="run only this stage (data, finetune, generate, judge, analysis)")
    run.add_argument("--dry-run", action="store_true", help="print the plan and a compute estimate; run nothing")
    train = sub.add_parser("train", help="train one scale (what accelerate launch runs on many devices)")
    train.add_argument("--config", required=True)
    train.add_argument("--root", default=None)
    train.add_argument("--scale", default=None, help="the scale to train (train.schedule: separate)")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from helpers.runner import StageFailed, run_study

            try:
                run_study(args.config, root=args.root, force=args.force, only=args.only, dry_run=args.dry_run)
            except StageFailed as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
        elif args.command == "train":
            from helpers.config import load_config, study_dir
            from helpers.finetune import train

            cfg = load_config(args.config)
            train(cfg, study_dir(cfg, args.root), args.scale)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
