"""history.html: the validation history across nights, one chart per column, thresholds and failed nights drawn."""

from __future__ import annotations

import html
import re
from pathlib import Path

import yaml

from pipelines.validate.suites import flatten_params
from pipelines.validate.validation import HISTORY_CHARTS, HISTORY_FIELDS, HISTORY_PAGE, history_page, update_history
from tasks.common import EXIT_NON_RETRYABLE, EXIT_OK
from tasks.validate import main
from tests.conftest import PROJECT_ROOT, write_params
from tests.pipelines.validate.test_validation import PARAMS
from tests.tasks.test_validate_task import LOGICAL_DATE, VALIDATE_PARAMS, write_extract

ROWS = [  # as the CSV holds them: text, "" where a check was skipped
    {"logical_date": "2026-03-01", "success": "True", "failures": "0", "interactions_rows": "900",
     "interval_rows": "30", "volume_ratio": "", "top_user_share": "0.1", "event_mix_tv": "0.05",
     "popularity_js": "0.1", "activity_js": "0.01", "new_user_share": "", "new_item_share": ""},
    {"logical_date": "2026-03-02", "success": "False", "failures": "2", "interactions_rows": "950",
     "interval_rows": "31", "volume_ratio": "1.02", "top_user_share": "0.6", "event_mix_tv": "0.06",
     "popularity_js": "0.4", "activity_js": "0.02", "new_user_share": "", "new_item_share": ""},
    {"logical_date": "2026-03-03", "success": "True", "failures": "0", "interactions_rows": "990",
     "interval_rows": "33", "volume_ratio": "0.98", "top_user_share": "0.12", "event_mix_tv": "0.04",
     "popularity_js": "0.12", "activity_js": "0.01", "new_user_share": "", "new_item_share": ""},
]


def sections(page: str) -> dict[str, str]:
    """Chart section id (the history column) -> its HTML."""
    return dict(re.findall(r'<section><h2 id="([^"]+)">(.*?)</section>', page, flags=re.S))


def test_one_chart_per_column_with_thresholds_and_the_failed_night_marked() -> None:
    page = history_page(ROWS, PARAMS)
    charts = sections(page)

    assert list(charts) == list(HISTORY_CHARTS)
    assert set(HISTORY_CHARTS) == set(HISTORY_FIELDS) - {"logical_date", "success"}
    for column, (title, _) in HISTORY_CHARTS.items():
        if column in ("new_user_share", "new_item_share"):  # skipped every night: no line to draw
            assert "No night recorded a value" in charts[column] and "<svg" not in charts[column]
            continue
        assert f'aria-label="{html.escape(title)}"' in charts[column], column
        assert charts[column].count("<title>failed night 2026-03-02</title>") == 1, column
        assert "failed night 2026-03-01" not in charts[column] and "failed night 2026-03-03" not in charts[column]
    popularity = charts["popularity_js"]
    assert popularity.count('class="threshold"') == 1 and "validate.drift.max_popularity_js = 0.25" in popularity
    assert charts["volume_ratio"].count('class="threshold"') == 2  # the band's both ends
    assert 'class="threshold"' not in charts["failures"]


def test_the_page_is_self_contained() -> None:
    page = history_page(ROWS, PARAMS)
    assert "<script" not in page and "http://" not in page and "https://" not in page and " src=" not in page
    assert "1 failed" in page and "2026-03-02" in page


def test_without_a_drift_section_no_drift_threshold_is_drawn() -> None:
    page = history_page(ROWS, {k: v for k, v in PARAMS.items() if k != "drift"})
    assert 'class="threshold"' not in sections(page)["popularity_js"]


def test_every_charted_threshold_is_a_shipped_parameter() -> None:
    shipped = flatten_params(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["validate"])
    for column, (_, keys) in HISTORY_CHARTS.items():
        missing = [key for key in keys if key.replace(".", "_") not in shipped]
        assert not missing, (column, missing)


def test_update_history_rewrites_the_page_with_the_csv(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    for row in ROWS:
        update_history(path, row, page_params=PARAMS)
    page = (tmp_path / HISTORY_PAGE).read_text()
    assert "3 nights, 2026-03-01 to 2026-03-03" in page
    update_history(path, {**ROWS[1], "success": "True"}, page_params=PARAMS)  # a rerun that passed
    assert "failed night" not in (tmp_path / HISTORY_PAGE).read_text()


def test_the_validate_stage_writes_the_page_every_night(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    paths = {"extract": str(tmp_path / "extract"), "validate": str(tmp_path / "validate"),
             "reports": str(reports), "quarantine": str(tmp_path / "quarantine")}
    params = write_params(tmp_path, paths=paths, validate=VALIDATE_PARAMS)
    write_extract(tmp_path / "extract", bad_rating=True)
    assert main(["--logical-date", LOGICAL_DATE, "--params", str(params)]) == EXIT_NON_RETRYABLE
    page = (reports / "validate" / HISTORY_PAGE).read_text()
    assert f"<title>failed night {LOGICAL_DATE}</title>" in page

    write_extract(tmp_path / "extract")
    assert main(["--logical-date", LOGICAL_DATE, "--params", str(params)]) == EXIT_OK
    assert "failed night" not in (reports / "validate" / HISTORY_PAGE).read_text()
