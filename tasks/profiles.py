"""Stage profiles: leave-last-out split, user sequences, user text profiles, item texts."""

from __future__ import annotations

import argparse

from pipelines.config import Params
from pipelines.profiles.stage import run_profiles
from tasks.common import parse_date, run_stage, stage_parser


def profiles_stage(args: argparse.Namespace, params: Params) -> None:
    run_profiles(parse_date(args.logical_date).isoformat(), params.profiles, params.paths)


def main(argv: list[str] | None = None) -> int:
    return run_stage(profiles_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
