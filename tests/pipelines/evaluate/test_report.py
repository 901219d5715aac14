"""The evaluation report: one self-contained, well-formed, escaped page with every section and its charts."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser

import pytest

from pipelines.evaluate.report import SECTIONS, render_report

SECTION_IDS = ["blessing", "metrics", "by-k", "deltas", "slices", "history", "training", "data"]
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "wbr", "area", "base", "source"}
EVIL = "<b>evil</b>"


def metrics(base: float) -> dict:
    values = {f"ndcg@{k}": base * f for k, f in ((1, 0.4), (5, 0.8), (10, 1.0), (20, 1.2))}
    values.update({f"hr@{k}": base * f * 1.6 for k, f in ((1, 0.4), (5, 0.8), (10, 1.0), (20, 1.2))})
    values.update({"mrr@10": base * 0.8, "recall@10": base * 1.6, "precision@10": base * 0.16,
                   "coverage@10": 0.3, "novelty@10": 9.1, "popularity_bias@10": 0.2, "users": 943})
    return values


def model(base: float) -> dict:
    return {"metrics": metrics(base),
            "intervals": {"ndcg@10": [base - 0.007, base + 0.007], "hr@10": [1.5 * base, 1.7 * base],
                          "mrr@10": [0.7 * base, 0.9 * base]}}


def check(metric: str, rule: str, threshold: float, **fields) -> dict:
    """One gate check as pipelines.evaluate.gate records it (every field present, None where not applicable)."""
    record = {"metric": metric, "rule": rule, "threshold": threshold, "passed": True, "reason": "", "slice": None,
              "relative": False, "champion": None, "candidate": None, "mostpop": None, "delta": None,
              "interval": None, "skipped": False}
    return {**record, **fields}


def full_evaluation() -> dict:
    models = {"candidate": model(0.1123), "champion": model(0.1083), "MostPop": model(0.05), "EASE": model(0.09),
              EVIL: model(0.07)}
    models["candidate"]["intervals"]["ndcg@10"] = [0.1050, 0.1190]
    slice_models = {"candidate": {"ndcg@10": 0.08, "hr@10": 0.2}, "champion": {"ndcg@10": 0.07, "hr@10": 0.18},
                    "MostPop": {"ndcg@10": 0.03, "hr@10": 0.1}, EVIL: {"ndcg@10": 0.05, "hr@10": 0.12}}
    return {
        "logical_date": "2026-03-02",
        "data_interval": {"start": "2026-03-01T00:00:00+00:00", "end": "2026-03-02T00:00:00+00:00"},
        "k": 10, "ks": [1, 5, 10, 20], "champion_version": 3, "candidate_name": "candidate",
        "models": models,
        "paired": {"ndcg@10": {"delta": 0.004, "low": -0.002, "high": 0.010},
                   "hr@10": {"delta": 0.012, "low": 0.003, "high": 0.021},
                   "mrr@10": {"delta": -0.006, "low": -0.011, "high": -0.001}},
        "slices": {"users: cold (<=5 train)": {"users": 120, "models": slice_models},
                   "users: heavy": {"users": 300, "models": slice_models},
                   "items: tail target": {"users": 80, "models": slice_models},
                   f"group: {EVIL}": {"users": 12, "models": slice_models}},
        "history": [{"run_date": "2026-02-27", "version": 1, "ndcg@10": 0.09, "hr@10": 0.18},
                    {"run_date": "2026-02-28", "version": 2, "ndcg@10": 0.10, "hr@10": 0.19},
                    {"run_date": "2026-03-01", "version": 3, "ndcg@10": 0.1083, "hr@10": 0.2}],
        "curve": [{"step": str(10 * i), "epoch": "1", "loss": str(5.1 - 0.2 * i),
                   "valid_ndcg": str(0.1 + 0.005 * i) if i % 2 == 0 else "", "seconds": "3.2"}
                  for i in range(1, 11)],
        "data_summary": {"users": 943, "items": 1682, "evaluated users": 943, "training interactions": 97000},
        "blessing": {"blessed": True, "decision": "BLESSED", "reason": "all 3 judged checks passed (0 skipped)",
                     "bootstrap_rule": None,
                     "checks": [check("ndcg@10", "floor", 0.01, candidate=0.1123, champion=0.1083,
                                      reason="ndcg@10 0.1123 >= floor 0.0100"),
                                check("ndcg@10", "max_loss", 0.005, candidate=0.1123, champion=0.1083, delta=0.004,
                                      interval=[-0.002, 0.010], reason=f"gain ok for {EVIL}"),
                                check("ndcg@10", "slice_max_loss", 0.05, slice="users: heavy", relative=True,
                                      candidate=0.08, champion=0.07, delta=0.1429,
                                      reason="slice 'users: heavy' (300 users) ndcg@10 vs champion +14.29%")]},
    }


def first_night() -> dict:
    evaluation = full_evaluation()
    evaluation["champion_version"] = None
    del evaluation["models"]["champion"]
    evaluation["paired"] = {}
    evaluation["slices"] = {}
    evaluation["history"] = evaluation["history"][:1]
    evaluation["blessing"] = {"blessed": False, "decision": "NOT_BLESSED", "reason": "ndcg@10 below floor",
                              "bootstrap_rule": "bootstrap rule (first night, no champion)",
                              "checks": [check("ndcg@10", "min_gain", 0.0, skipped=True, reason="first night")]}
    return evaluation


class Page(HTMLParser):
    """Counts tags, collects ids and checks that every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}
        self.ids: list[str] = []
        self.h2_ids: list[str] = []
        self.svg_numbers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs)

    def _open(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        values = dict(attrs)
        if "id" in values:
            self.ids.append(values["id"])
            if tag == "h2":
                self.h2_ids.append(values["id"])
        if "svg" in self.stack or tag == "svg":
            self.svg_numbers += [v or "" for k, v in attrs if k in {"x", "y", "x1", "x2", "y1", "y2", "cx", "cy",
                                                                     "width", "height", "points", "viewbox"}]

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    return parser


def section(page: str, anchor: str) -> str:
    """The HTML of one section, from its heading to the next."""
    start = page.index(f'id="{anchor}"')
    end = page.find("<h2", start)
    return page[start:] if end < 0 else page[start:end]


@pytest.fixture(scope="module")
def page() -> str:
    return render_report(full_evaluation())


def test_every_section_has_its_heading_in_order(page):
    parsed = parse(page)
    assert [anchor for anchor, _ in SECTIONS] == SECTION_IDS
    assert parsed.h2_ids == SECTION_IDS
    assert len(set(parsed.ids)) == len(parsed.ids)


def test_page_is_well_formed_with_one_chart_per_plot(page):
    parsed = parse(page)
    # NDCG@K, HR@K, deltas, slices, history, loss, valid_ndcg
    assert parsed.counts.get("svg") == 7
    per_section = {anchor: section(page, anchor).count("<svg") for anchor in SECTION_IDS}
    assert per_section == {"blessing": 0, "metrics": 0, "by-k": 2, "deltas": 1, "slices": 1, "history": 1,
                           "training": 2, "data": 0}
    assert all(re.fullmatch(r"[-0-9., ]+", value) for value in parsed.svg_numbers), parsed.svg_numbers


def test_page_is_self_contained(page):
    lowered = page.lower()
    assert "http" not in lowered
    assert "<script" not in lowered
    assert "<link" not in lowered
    assert "<style>" in lowered


def test_headline_metric_shows_its_interval(page):
    metrics_html = section(page, "metrics")
    assert "0.1123 [0.1050, 0.1190]" in metrics_html
    assert "+0.0040" in section(page, "deltas") and "[-0.0020, +0.0100]" in section(page, "deltas")


def test_input_strings_are_escaped(page):
    assert EVIL not in page
    assert html_escaped(EVIL) in section(page, "metrics")
    assert html_escaped(f"group: {EVIL}") in section(page, "slices")
    assert f"<th>{html_escaped(EVIL)} ndcg@10</th>" in section(page, "slices")  # a column header
    assert f">{html_escaped(EVIL)}</text>" in section(page, "by-k")  # a legend entry
    assert html_escaped(f"gain ok for {EVIL}") in section(page, "blessing")
    assert "&lt;=5 train" in section(page, "slices")


def html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_blessing_comes_first_in_green_with_its_checks(page):
    blessing = section(page, "blessing")
    assert page.index('id="blessing"') < page.index('id="metrics"')
    assert 'class="decision pass">BLESSED<' in blessing
    assert "all 3 judged checks passed" in blessing
    assert "0.1083" in blessing and "[-0.0020, +0.0100]" in blessing


def test_each_check_shows_its_values_and_interval(page):
    rows = re.findall(r"<tr class=\"pass\">(.*?)</tr>", section(page, "blessing"))
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    assert cells[0][:8] == ["ndcg@10", "floor", "0.0100", "0.1083", "0.1123", "", "", ""]
    assert cells[1][:8] == ["ndcg@10", "max_loss", "0.0050", "0.1083", "0.1123", "", "+0.0040", "[-0.0020, +0.0100]"]
    # a relative slice rule: which slice, and threshold and delta as a share of the champion's value
    assert cells[2][:7] == ["ndcg@10 in users: heavy", "slice_max_loss (relative)", "5.00%", "0.0700", "0.0800",
                            "", "+14.29%"]


def test_a_refusal_shows_every_failed_check_in_red():
    evaluation = full_evaluation()
    evaluation["blessing"].update(blessed=False, decision="NOT_BLESSED", reason="1 of 2 checks failed: mostpop low")
    evaluation["blessing"]["checks"] = [
        check("hr@10", "vs_mostpop", 0.0, passed=False, candidate=0.1, mostpop=0.12, delta=-0.02, reason="mostpop low"),
        check("hr@10", "floor", 0.02, candidate=0.1, reason="ok")]
    blessing = section(render_report(evaluation), "blessing")
    assert 'class="decision fail">NOT_BLESSED<' in blessing and "1 of 2 checks failed: mostpop low" in blessing
    failed = re.search(r"<tr class=\"fail\">(.*?)</tr>", blessing).group(1)
    assert re.findall(r"<td[^>]*>(.*?)</td>", failed)[5:9] == ["0.1200", "-0.0200", "", "FAIL"]


def test_each_model_keeps_its_colour_across_charts(page):
    by_k, slices = section(page, "by-k"), section(page, "slices")
    for colour in ("#1f5fbf", "#d95f02", "#666666"):  # candidate, champion, MostPop
        assert colour in by_k and colour in slices
    assert "#1b9e77" in by_k  # EASE
    assert "#7b3294" in by_k  # the first model without a fixed colour


def test_first_night_explains_the_empty_sections():
    page = render_report(first_night())
    parsed = parse(page)
    assert parsed.h2_ids == SECTION_IDS
    assert parsed.counts.get("svg") == 4  # NDCG@K, HR@K, loss, valid_ndcg
    assert "no champion to compare with" in section(page, "deltas")
    assert "No slices were computed" in section(page, "slices")
    assert "one night of history" in section(page, "history")
    assert "2026-02-27" in section(page, "history")
    assert "Champion: none (first night)" in page
    assert 'class="decision fail">NOT_BLESSED<' in page
    assert "skipped" in section(page, "blessing")
    assert "bootstrap rule (first night, no champion)" in section(page, "blessing")


def test_nan_and_missing_numbers_render_as_na():
    evaluation = full_evaluation()
    candidate = evaluation["models"]["candidate"]
    candidate["metrics"]["ndcg@10"] = float("nan")
    candidate["metrics"]["mrr@10"] = None
    candidate["intervals"]["hr@10"] = [float("nan"), float("nan")]
    evaluation["paired"]["hr@10"] = {"delta": float("nan"), "low": float("nan"), "high": float("nan")}
    evaluation["slices"]["users: heavy"]["models"] = {"candidate": {"ndcg@10": float("nan")}}
    evaluation["history"][1]["ndcg@10"] = float("nan")
    evaluation["curve"][3]["loss"] = "nan"
    evaluation["data_summary"]["items"] = float("nan")
    page = render_report(evaluation)
    parsed = parse(page)
    assert parsed.counts.get("svg") == 7
    assert all(re.fullmatch(r"[-0-9., ]+", value) for value in parsed.svg_numbers)
    assert "nan" not in page.lower()
    candidate_row = re.search(r"<tr><td class=\"text\">candidate</td>(.*?)</tr>", section(page, "metrics")).group(1)
    assert candidate_row.startswith("<td>n/a</td>")
    assert candidate_row.count("n/a") >= 2
    assert "n/a" in section(page, "deltas") and "n/a" in section(page, "slices") and "n/a" in section(page, "data")


def test_charts_without_data_say_so():
    evaluation = full_evaluation()
    evaluation["curve"] = [{"step": "1", "loss": "", "valid_ndcg": ""}]
    evaluation["history"] = [{"run_date": d, "version": 1, "ndcg@10": float("nan"), "hr@10": None}
                             for d in ("2026-02-28", "2026-03-01")]
    page = render_report(evaluation)
    parse(page)
    assert "No loss values were recorded." in section(page, "training")
    assert "No validation NDCG values were recorded." in section(page, "training")
    assert "No champion metric was recorded" in section(page, "history")


def test_almost_empty_evaluation_still_renders():
    page = render_report({"logical_date": "2026-03-02", "k": 10})
    parsed = parse(page)
    assert parsed.h2_ids == SECTION_IDS
    assert "svg" not in parsed.counts
    for sentence in ("No blessing decision", "No model metrics", "No metrics by K", "no champion to compare",
                     "No slices", "no night of history", "No training curve", "No data summary"):
        assert sentence in page


def test_input_is_not_modified():
    evaluation = full_evaluation()
    before = copy.deepcopy(evaluation)
    render_report(evaluation)
    assert evaluation == before
