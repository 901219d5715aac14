"""Stage publish: the champion's top-K per user, written to the warehouse for the night.

It runs only after the night's promotion decision. A promoted candidate is the champion and is
served; after a refusal the champion that is still current (the previous one) is served. The
summary names the decision, the version served and why. A rerun replaces the night's rows.
Last, the whole night is recorded: every stage in DVC (``dvc.lock`` names the night and the params
that ran) and the night as a commit on the ``nights`` branch (pipelines/registry/nights.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipelines.config import Params
from pipelines.core.io import read_json
from pipelines.publish.stage import run_publish
from pipelines.registry.snapshot import record_night
from tasks.common import parse_date, run_stage, stage_parser


def publish_stage(args: argparse.Namespace, params: Params) -> None:
    logical_date = parse_date(args.logical_date).isoformat()
    run_publish(logical_date, params.publish, params.paths, os.environ, params.groups)
    summary = read_json(Path(params.paths.publish) / "summary.json")
    served = f"v{summary['model_version']}" if summary.get("model_version") else "nothing"
    record_night(Path.cwd(), logical_date=logical_date, params_file=Path(args.params),
                 message=f"night {logical_date}: {summary['promotion']}, served {served}")


def main(argv: list[str] | None = None) -> int:
    return run_stage(publish_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
