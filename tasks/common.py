"""What every stage entry point shares: arguments, params, exit codes, logging."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from pipelines.config import Params, load_params
from pipelines.core.failures import permanent_reason
from pipelines.core.io import NonRetryableError

# Exit codes the Airflow operator maps onto retry behaviour.
EXIT_OK = 0
EXIT_RETRYABLE = 1
EXIT_NON_RETRYABLE = 3

log = logging.getLogger("retrain")


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise NonRetryableError(f"--logical-date must be YYYY-MM-DD, got {text!r}") from exc


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument(
        "--logical-date",
        required=True,
        help="the night being run, YYYY-MM-DD (Airflow's {{ ds }}; params run.logical_date in DVC)",
    )
    return parser


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("RETRAIN_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_stage(stage: Callable[[argparse.Namespace, Params], None], parser: argparse.ArgumentParser,
              argv: Sequence[str] | None = None) -> int:
    """Runs one stage and turns its outcome into an exit code the orchestrator understands."""
    configure_logging()
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)  # every key checked before any work: a bad one exits 3
        stage(args, params)
    except NonRetryableError as exc:
        log.error("stage failed (not retryable): %s", exc)
        return EXIT_NON_RETRYABLE
    except Exception as exc:  # noqa: BLE001 - classified once, in pipelines.core.failures
        reason = permanent_reason(exc)
        if reason is None:  # may be transient: the traceback for whoever reads the retry's log
            traceback.print_exc()
            return EXIT_RETRYABLE
        log.error("stage failed (not retryable): %s", reason)
        log.debug("the failure in full", exc_info=True)
        return EXIT_NON_RETRYABLE
    return EXIT_OK
