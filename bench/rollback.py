"""Rollback speed: ``retrain registry rollback`` on a registry holding a year of nights.

    python bench/rollback.py [--nights 365] [--artifact-mb 8] [--repeats 15]
                             [--postgres-url URL | --postgres-url none] [--out bench/results]

Seeds a registry (SQLite, and a temporary PostgreSQL database) with one version per night, two
in three blessed, cycling through four artifacts of ``--artifact-mb`` MB each, then rolls the
champion back ``--repeats`` times through the CLI (the time ``rollback`` prints: the registry's
own work, without process start-up) and through the Python API. Prints a table of medians and
writes ``<out>/rollback.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(PROJECT_ROOT))

import yaml  # noqa: E402

from bench.databases import temporary_postgres  # noqa: E402
from pipelines.registry.store import Registry  # noqa: E402

POSTGRES_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
FIRST_NIGHT = dt.date(2025, 3, 1)


def make_artifacts(root: Path, count: int, megabytes: int) -> list[Path]:
    """Model-like directories with an adapter file of random bytes (hashing cost is realistic)."""
    directories = []
    for i in range(count):
        directory = root / f"model{i}"
        (directory / "adapter").mkdir(parents=True)
        (directory / "adapter" / "adapter_model.safetensors").write_bytes(os.urandom(max(megabytes << 20, 1024)))
        (directory / "config.json").write_text(json.dumps({"model": i}))
        directories.append(directory)
    return directories


def seed(url: str, store: Path, artifacts: list[Path], nights: int) -> None:
    with Registry(url, store) as registry:
        for i in range(nights):
            registry.register(
                model_dir=artifacts[i % len(artifacts)], run_date=(FIRST_NIGHT + dt.timedelta(days=i)).isoformat(),
                blessed=i % 3 != 2, reason="bench night", base_model="minilm", data_interval=("a", "b"),
                params={"lora_rank": 8}, metrics={"candidate": {"ndcg@10": 0.1}}, lineage={}, git_commit="bench",
                report_path="report.html")


def cli_rollback_ms(params_file: Path) -> float:
    """One CLI rollback; the time it prints covers the registry's work, not Python's start-up."""
    env = {**os.environ, "RETRAIN_LOG_LEVEL": "WARNING"}
    env.pop("RETRAIN_REGISTRY_URL", None)
    out = subprocess.run([sys.executable, "-m", "tasks.cli", "--params", str(params_file), "registry", "rollback",
                          "--reason", "bench", "--actor", "bench"], capture_output=True, text=True, env=env,
                         cwd=PROJECT_ROOT, check=True).stdout
    return float(out.rsplit(" in ", 1)[1].split()[0])


def measure(backend: str, url: str, root: Path, artifacts: list[Path], nights: int, repeats: int) -> dict[str, Any]:
    store = root / f"store-{backend}"
    print(f"[{backend}] seeding {nights} nights ...", flush=True)
    seed(url, store, artifacts, nights)
    params_file = root / f"params-{backend}.yaml"
    params_file.write_text(yaml.safe_dump({"paths": {"registry_url": url, "artifact_store": str(store)}}))
    cli = [cli_rollback_ms(params_file) for _ in range(repeats)]
    api = []
    with Registry(url, store) as registry:
        for _ in range(repeats):
            started = time.perf_counter()
            registry.rollback(reason="bench", actor="bench")
            api.append((time.perf_counter() - started) * 1000)
        audit_entries = len(registry.audit_log())
    return {"backend": backend, "versions": nights, "audit_entries": audit_entries,
            "cli_rollback_ms_median": round(statistics.median(cli), 1), "cli_rollback_ms_max": round(max(cli), 1),
            "api_rollback_ms_median": round(statistics.median(api), 1), "api_rollback_ms_max": round(max(api), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--artifact-mb", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--postgres-url", default=POSTGRES_ADMIN_URL, help="admin URL, or 'none' to skip")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-rollback-") as scratch:
        root = Path(scratch)
        artifacts = make_artifacts(root / "models", 4, args.artifact_mb)
        rows.append(measure("sqlite", f"sqlite:///{root}/registry.db", root, artifacts, args.nights, args.repeats))
        if args.postgres_url == "none":
            url, drop, why_not = None, None, "--postgres-url none"
        else:
            url, drop, why_not = temporary_postgres(args.postgres_url)
        if url is None:
            print(f"PostgreSQL skipped: {why_not}")
        else:
            try:
                rows.append(measure("postgresql", url, root, artifacts, args.nights, args.repeats))
            finally:
                drop()
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
               f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"\nrollback, {args.nights} versions, {args.artifact_mb} MB artifacts, median of {args.repeats} ({machine})")
    print(f"{'backend':12} {'audit entries':>13} {'CLI ms':>8} {'CLI max':>8} {'API ms':>8} {'API max':>8}")
    for r in rows:
        print(f"{r['backend']:12} {r['audit_entries']:>13} {r['cli_rollback_ms_median']:>8} "
              f"{r['cli_rollback_ms_max']:>8} {r['api_rollback_ms_median']:>8} {r['api_rollback_ms_max']:>8}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine, "nights": args.nights, "artifact_mb": args.artifact_mb, "repeats": args.repeats,
              "results": rows}
    (args.out / "rollback.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out / 'rollback.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
