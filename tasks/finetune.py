"""Stage finetune: LoRA fine-tuning of the recommender on the night's profiles.

Runs on one process, or under ``torchrun --nproc_per_node N -m tasks.finetune`` on several
(DDP: gloo on CPUs, NCCL on GPUs). Warm-starts from the champion when its architecture fits,
checkpoints every ``finetune.checkpoint_every_steps`` steps and resumes after a crash.
"""

from __future__ import annotations

import argparse

from pipelines.config import Params
from pipelines.model.stage import run_finetune
from tasks.common import run_stage, stage_parser


def finetune_stage(args: argparse.Namespace, params: Params) -> None:
    run_finetune(params.finetune, params.paths)  # the night is the profiles' (their manifest's logical date)


def main(argv: list[str] | None = None) -> int:
    return run_stage(finetune_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
