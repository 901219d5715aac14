"""Stage profiles: leave-last-out split, user sequences, user text profiles, item texts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tasks.common import parse_date, run_stage, stage_parser


def profiles_stage(args: argparse.Namespace, params: dict[str, Any]) -> None:
    import pandas as pd

    from pipelines.core.io import NonRetryableError, atomic_dir, read_json, write_manifest
    from pipelines.profiles.build import build_profiles
    from pipelines.core.schema import extract_table_path
    from pipelines.validate.validation import require_validated

    extract_dir, validate_dir = Path(params["paths"]["extract"]), Path(params["paths"]["validate"])
    require_validated(validate_dir, extract_dir)
    source = read_json(extract_dir / "manifest.json")
    if source["logical_date"] != parse_date(args.logical_date).isoformat():
        raise NonRetryableError(f"extract is for {source['logical_date']}, not {args.logical_date}")
    profiles = build_profiles(
        *(pd.read_parquet(extract_table_path(extract_dir, table)) for table in ("interactions", "items", "users")),
        params["profiles"],
    )
    with atomic_dir(Path(params["paths"]["profiles"])) as staging:
        profiles.sequences.to_parquet(staging / "sequences.parquet", index=False)
        profiles.items.to_parquet(staging / "items.parquet", index=False)
        profiles.users.to_parquet(staging / "users.parquet", index=False)
        evaluable = int(profiles.sequences["test_item"].notna().sum())
        write_manifest(staging, stage="profiles", logical_date=source["logical_date"],
                       data_interval=source["data_interval"], params=params["profiles"],
                       rows={"users": len(profiles.sequences), "evaluable_users": evaluable,
                             "items": len(profiles.items)})


def main(argv: list[str] | None = None) -> int:
    return run_stage(profiles_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
