"""Stage evaluate: candidate, re-evaluated champion, MostPop and EASE on the same split.

Writes the blessing, ``evaluation.json`` (metrics at every K with bootstrap intervals, the paired
candidate-vs-champion comparison, slices, the champion's history), the HTML report, and
metrics and plots for ``dvc metrics diff`` / ``dvc plots diff``.
"""

from __future__ import annotations

import argparse

from pipelines.config import Params
from pipelines.evaluate.stage import run_evaluate
from tasks.common import run_stage, stage_parser


def evaluate_stage(args: argparse.Namespace, params: Params) -> None:
    run_evaluate(params.evaluate, params.paths, params.groups)  # the night is the profiles' (their manifest's logical date)


def main(argv: list[str] | None = None) -> int:
    return run_stage(evaluate_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
