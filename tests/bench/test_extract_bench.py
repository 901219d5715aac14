"""bench/extract.py runs end to end on a small table and reports what the README quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import POSTGRES_ADMIN_URL, PROJECT_ROOT

KEYS = {"rows", "ours_full_s", "ours_incremental_s", "naive_s", "ours_peak_rss_mb", "naive_peak_rss_mb"}


def test_extract_bench_measures_full_incremental_and_naive(postgres_url: str, tmp_path: Path) -> None:
    # postgres_url: the server is there (or the test skips, or fails under RETRAIN_REQUIRE_SERVICES).
    done = subprocess.run([sys.executable, "bench/extract.py", "--sizes", "3000", "--days", "30", "--repeats", "1",
                           "--postgres-url", POSTGRES_ADMIN_URL, "--out", str(tmp_path)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ours full s" in done.stdout and "3,000" in done.stdout
    (result,) = json.loads((tmp_path / "extract.json").read_text())["results"]
    assert KEYS <= set(result) and result["rows"] == 3000
    assert all(result[key] > 0 for key in KEYS)
    # 100 events a day: the incremental night reads its day and the 2 lookback days, nothing more.
    assert result["ours_incremental_rows_read"] == 300
    assert all(run["rows"] == 3000 for runs in result["runs"].values() for run in runs)
