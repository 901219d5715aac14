"""Stage publish: the champion's top-K per user, written to the warehouse for the night.

It runs only after the night's promotion decision. A promoted candidate is the champion and is
served; after a refusal the champion that is still current (the previous one) is served. The
summary names the decision, the version served and why. A rerun replaces the night's rows.
"""

from __future__ import annotations

import argparse
import os

from pipelines.config import Params
from pipelines.publish.stage import run_publish
from tasks.common import parse_date, run_stage, stage_parser


def publish_stage(args: argparse.Namespace, params: Params) -> None:
    run_publish(parse_date(args.logical_date).isoformat(), params.publish, params.paths, os.environ, params.groups)


def main(argv: list[str] | None = None) -> int:
    return run_stage(publish_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
