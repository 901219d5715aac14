"""The profiles stage: the validated extract into sequences, user profiles and item texts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.config import PathsParams, ProfilesParams


def run_profiles(logical_date: str, settings: ProfilesParams, paths: PathsParams) -> None:
    """Builds ``paths.profiles`` from ``paths.extract`` once ``paths.validate`` passed it; with the
    extract's group tables also ``groups.parquet`` (explicit groups split like users).

    Raises:
        NonRetryableError: the extract is not validated, or is for another night than ``logical_date``.
    """
    import pandas as pd

    from pipelines.core.io import NonRetryableError, atomic_dir, read_json, write_manifest
    from pipelines.core.schema import extract_table_path
    from pipelines.profiles.build import build_groups, build_profiles
    from pipelines.validate.validation import require_validated

    extract_dir, validate_dir = Path(paths.extract), Path(paths.validation)
    require_validated(validate_dir, extract_dir)
    source = read_json(extract_dir / "manifest.json")
    if source["logical_date"] != logical_date:
        raise NonRetryableError(f"extract is for {source['logical_date']}, not {logical_date}")
    profiles = build_profiles(
        *(pd.read_parquet(extract_table_path(extract_dir, table)) for table in ("interactions", "items", "users")),
        settings,
    )
    rows = {"users": len(profiles.sequences), "evaluable_users": int(profiles.sequences["test_item"].notna().sum()),
            "items": len(profiles.items)}
    groups = None
    if extract_table_path(extract_dir, "group_members").exists():  # the group tables come together
        groups = build_groups(*(pd.read_parquet(extract_table_path(extract_dir, table))
                                for table in ("group_members", "group_events")),
                              dt.datetime.fromisoformat(source["data_interval"]["end"]), settings.min_user_interactions)
        rows.update(groups=len(groups), evaluable_groups=int(groups["test_item"].notna().sum()))
    with atomic_dir(Path(paths.profiles)) as staging:
        profiles.sequences.to_parquet(staging / "sequences.parquet", index=False)
        profiles.items.to_parquet(staging / "items.parquet", index=False)
        profiles.users.to_parquet(staging / "users.parquet", index=False)
        if groups is not None:
            groups.to_parquet(staging / "groups.parquet", index=False)
        write_manifest(staging, stage="profiles", logical_date=source["logical_date"],
                       data_interval=source["data_interval"], params=settings.model_dump(), rows=rows)
