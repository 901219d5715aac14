"""The evaluation report: one self-contained, well-formed, escaped page with every section and its charts.

Content only (sections, numbers, intervals, verdicts, sentences, escaping, inline SVG); never pixel positions."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser

import pytest

from pipelines.evaluate.report import SECTIONS, render_report

SECTION_IDS = ["blessing", "metrics", "by-k", "deltas", "slices", "groups", "history", "training", "data"]
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "wbr", "area", "base", "source"}
EVIL = "<b>evil</b>"
SCRIPT = "<script>alert(1)</script>"
# Where "http" may appear: the SVG namespace declarations, which name the namespace and fetch nothing.
NAMESPACE = re.compile(r'\sxmlns(:\w+)?="http://www\.w3\.org/[^"]*"')


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
        "groups": groups_section(),
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


def groups_section() -> dict:
    """The groups section as pipelines.evaluate.groups records it."""
    def phase(base: float) -> dict:
        return {"member_mean_ndcg@10": base, "member_min_ndcg@10": base / 4, "group_ndcg@10": base * 1.5,
                "group_hr@10": base * 3}

    return {
        "interest_groups": {"groups": 3, "sizes": [400, 300, 243], "silhouettes": {"2": 0.2, "3": 0.3},
                            "merged_small_groups": 1, "min_group_size": 20},
        "strategy": "gfar", "explicit_strategy": "group_model", "strategy_chosen_on": "explicit groups",
        "strategies": {"average": {"validation": phase(0.05), "test": phase(0.049)},
                       "gfar": {"validation": phase(0.06), "test": phase(0.055)},
                       "group_model": {"validation": {"group_ndcg@10": 0.2, "group_hr@10": 0.4},
                                       "test": {"group_ndcg@10": 0.19, "group_hr@10": 0.38}}},
        "sampled_groups": {"2": 100, "4": 100, "8": 100}, "explicit_groups": 47,
        "item_model": {"lambda": 500.0, "weight": 2.0, "reason": "chosen on validation", "validation": {"500/2": 0.2}},
        "backoff": {"strength": 5.0, "validation": {"0.0": 0.1, "5.0": 0.11}, "cold_max_interactions": 5,
                    "max_interactions": 10,
                    "cold": {"users": 98, "with backoff": {"ndcg@10": 0.15, "hr@10": 0.3},
                             "without": {"ndcg@10": 0.12, "hr@10": 0.25}, "MostPop": {"ndcg@10": 0.1, "hr@10": 0.2}},
                    "warm": {"users": 460, "with backoff": {"ndcg@10": 0.2, "hr@10": 0.4},
                             "without": {"ndcg@10": 0.2, "hr@10": 0.4}}},
        "models": {"candidate": {"member_mean_ndcg@10": 0.055, "cold_ndcg@10": 0.15},
                   "MostPop": {"member_mean_ndcg@10": 0.02, "cold_ndcg@10": 0.1}},
        "intervals": {"candidate": {"member_mean_ndcg@10": [0.05, 0.06]}},
        "seconds": 3.2,
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
    """Counts tags, collects ids, svg text and checks that every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}
        self.ids: list[str] = []
        self.h2_ids: list[str] = []
        self.svg_labels: list[str] = []  # aria-label of every <svg>
        self.svg_parents: list[str] = []  # the element each <svg> sits in
        self.svg_text: list[str] = []  # the content of <text> elements inside charts

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
            self.ids.append(values["id"] or "")
            if tag == "h2":
                self.h2_ids.append(values["id"] or "")
        if tag == "svg":
            self.svg_labels.append(values.get("aria-label") or "")
            self.svg_parents.append(self.stack[-1] if self.stack else "")

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "text" and "svg" in self.stack:
            self.svg_text.append(data)

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


def table_rows(html_text: str) -> list[list[str]]:
    """The cells of every body row of the tables in `html_text`."""
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html_text)
            if "<td" in row]


def chart_texts(html_text: str) -> list[str]:
    """The text drawn in the charts of `html_text` (labels, ticks, legends), unescaped."""
    return parse_fragment(html_text).svg_text


def parse_fragment(html_text: str) -> Page:
    parser = Page()
    parser.feed(html_text)
    return parser


def html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@pytest.fixture(scope="module")
def page() -> str:
    return render_report(full_evaluation())


def test_every_section_has_its_heading_in_order(page):
    parsed = parse(page)
    assert [anchor for anchor, _ in SECTIONS] == SECTION_IDS
    assert parsed.h2_ids == SECTION_IDS
    assert [f'<a href="#{anchor}">' in page for anchor in SECTION_IDS] == [True] * len(SECTION_IDS)


def test_ids_are_unique_across_the_page_and_its_charts(page):
    parsed = parse(page)
    assert len(parsed.ids) > len(SECTION_IDS)  # the charts' clip paths and markers have ids too
    assert len(set(parsed.ids)) == len(parsed.ids)


def test_charts_are_inline_svg_one_per_plot(page):
    parsed = parse(page)
    # NDCG@K, HR@K, deltas, slices, backoff, history, loss, valid_ndcg
    assert parsed.svg_labels == ["NDCG@K by cut-off K", "HR@K by cut-off K", "Candidate minus champion",
                                 "NDCG@10 by slice", "NDCG@10 of cold and warm users, with and without backoff",
                                 "Published champion across nights", "Training loss by step",
                                 "Validation NDCG by step"]
    assert parsed.svg_parents == ["figure"] * 8
    per_section = {anchor: section(page, anchor).count("<svg") for anchor in SECTION_IDS}
    assert per_section == {"blessing": 0, "metrics": 0, "by-k": 2, "deltas": 1, "slices": 1, "groups": 1,
                           "history": 1, "training": 2, "data": 0}
    assert "<img" not in page and "<object" not in page and "<iframe" not in page


def test_chart_text_stays_text(page):
    by_k, history = chart_texts(section(page, "by-k")), chart_texts(section(page, "history"))
    assert {"1", "5", "10", "20"} <= set(by_k)  # the K ticks
    assert {"candidate", "champion", "MostPop", "EASE", EVIL} <= set(by_k)  # the legend
    assert {"v1", "v2", "v3", "2026-02-27", "2026-03-01"} <= set(history)  # versions over their nights
    assert {"+0.0040", "+0.0120", "-0.0060"} <= set(chart_texts(section(page, "deltas")))
    assert "0.0800" in chart_texts(section(page, "slices"))
    assert "<path id=\"DejaVu" not in page  # no glyph outlines


def test_page_is_self_contained(page):
    lowered = NAMESPACE.sub("", page).lower()
    assert "http" not in lowered
    assert "<script" not in lowered
    assert "<link" not in lowered and " src=" not in lowered and "@import" not in lowered
    assert set(re.findall(r"url\((.)", lowered)) <= {"#"}  # only references to the chart's own clip paths
    assert "<style>" in lowered


def test_a_url_outside_a_namespace_declaration_is_caught(page):
    # The self-containment check above is no wider than it must be: a URL anywhere else is still found.
    for leak in ('<svg xmlns="http://www.w3.org/2000/svg"><image href="https://x/y.png"/>',
                 '<style>@font-face { src: url(https://fonts.example/f.woff) }</style>'):
        assert "http" in NAMESPACE.sub("", page + leak).lower()


def test_rendering_is_deterministic():
    assert render_report(full_evaluation()) == render_report(full_evaluation())


def test_headline_metric_shows_its_interval(page):
    rows = {row[0]: row for row in table_rows(section(page, "metrics"))}
    assert list(rows) == ["candidate", "champion", "MostPop", "EASE", html_escaped(EVIL)]
    assert rows["candidate"][1] == "0.1123 [0.1050, 0.1190]"
    assert rows["champion"][1] == "0.1083 [0.1013, 0.1153]"
    assert rows["candidate"][-1] == "943"  # users
    assert "95% bootstrap intervals" in section(page, "metrics")


def test_metric_by_k_table_lists_every_cut_off(page):
    by_k = section(page, "by-k")
    cut_offs = [f"{metric}@{k}" for metric in ("ndcg", "hr") for k in (1, 5, 10, 20)]
    assert re.findall(r"<th>(.*?)</th>", by_k) == ["model", *cut_offs]
    candidate = table_rows(by_k)[0]
    assert candidate[:5] == ["candidate", "0.0449", "0.0898", "0.1123", "0.1348"]


def test_deltas_show_their_interval_and_verdict(page):
    deltas = section(page, "deltas")
    assert table_rows(deltas) == [["ndcg@10", "+0.0040", "[-0.0020, +0.0100]", "no clear difference"],
                                  ["hr@10", "+0.0120", "[+0.0030, +0.0210]", "candidate better"],
                                  ["mrr@10", "-0.0060", "[-0.0110, -0.0010]", "candidate worse"]]
    assert "(version 3)" in deltas and "95% bootstrap intervals" in deltas


def test_slices_show_users_and_every_model(page):
    slices = section(page, "slices")
    rows = table_rows(slices)
    assert [row[:2] for row in rows] == [["users: cold (&lt;=5 train)", "120"], ["users: heavy", "300"],
                                        ["items: tail target", "80"], [f"group: {html_escaped(EVIL)}", "12"]]
    assert rows[0][2:] == ["0.0800", "0.2000", "0.0700", "0.1800", "0.0300", "0.1000", "0.0500", "0.1200"]


def test_history_training_and_data(page):
    assert table_rows(section(page, "history")) == [["2026-02-27", "1", "0.0900", "0.1800"],
                                                    ["2026-02-28", "2", "0.1000", "0.1900"],
                                                    ["2026-03-01", "3", "0.1083", "0.2000"]]
    assert "Final loss 3.1000 at step 100; best valid_ndcg 0.1500 at step 100." in section(page, "training")
    assert table_rows(section(page, "data")) == [["users", "943"], ["items", "1,682"], ["evaluated users", "943"],
                                                 ["training interactions", "97,000"]]


def test_header_names_the_night_and_the_champion(page):
    assert "<h1>Nightly evaluation, 2026-03-02</h1>" in page
    assert "Data interval 2026-03-01T00:00:00+00:00 to 2026-03-02T00:00:00+00:00" in page
    assert "Champion: version 3." in page and "cut-offs computed: 1, 5, 10, 20" in page


def test_input_strings_are_escaped(page):
    assert EVIL not in page
    assert html_escaped(EVIL) in section(page, "metrics")
    assert html_escaped(f"group: {EVIL}") in section(page, "slices")
    assert f"<th>{html_escaped(EVIL)} ndcg@10</th>" in section(page, "slices")  # a column header
    assert f">{html_escaped(EVIL)}</text>" in section(page, "by-k")  # a legend entry
    assert html_escaped(f"gain ok for {EVIL}") in section(page, "blessing")
    assert "&lt;=5 train" in section(page, "slices")


def test_a_script_named_model_stays_text():
    evaluation = full_evaluation()
    evaluation["candidate_name"] = SCRIPT
    evaluation["models"][SCRIPT] = evaluation["models"].pop("candidate")
    evaluation["models"]["a$\\frac{$b"] = model(0.06)  # not mathtext (which would fail to parse)
    evaluation["logical_date"] = SCRIPT
    page = render_report(evaluation)
    parse(page)
    assert "<script" not in page.lower()
    assert f"<title>Nightly evaluation {html_escaped(SCRIPT)}</title>" in page
    assert f"Candidate: {html_escaped(SCRIPT)}." in page
    assert table_rows(section(page, "metrics"))[0][0] == html_escaped(SCRIPT)
    assert "a$\\frac{$b" in chart_texts(section(page, "by-k"))


def test_blessing_comes_first_in_green_with_its_checks(page):
    blessing = section(page, "blessing")
    assert page.index('id="blessing"') < page.index('id="metrics"')
    assert 'class="decision pass">BLESSED<' in blessing
    assert "all 3 judged checks passed" in blessing
    assert "0.1083" in blessing and "[-0.0020, +0.0100]" in blessing


def test_each_check_shows_its_values_and_interval(page):
    rows = re.findall(r"<tr class=\"pass\">(.*?)</tr>", section(page, "blessing"))
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    assert cells[0] == ["ndcg@10", "floor", "0.0100", "0.1083", "0.1123", "", "", "", "pass",
                        "ndcg@10 0.1123 &gt;= floor 0.0100"]
    assert cells[1][:9] == ["ndcg@10", "max_loss", "0.0050", "0.1083", "0.1123", "", "+0.0040", "[-0.0020, +0.0100]",
                            "pass"]
    # a relative slice rule: which slice, and threshold and delta as a share of the champion's value
    assert cells[2][:7] == ["ndcg@10 in users: heavy", "slice_max_loss (relative)", "5.00%", "0.0700", "0.0800",
                            "", "+14.29%"]


def test_a_refusal_shows_every_failed_check_in_red():
    evaluation = full_evaluation()
    evaluation["blessing"].update(blessed=False, decision="NOT_BLESSED", reason="2 of 3 checks failed: mostpop low")
    evaluation["blessing"]["checks"] = [
        check("hr@10", "vs_mostpop", 0.0, passed=False, candidate=0.1, mostpop=0.12, delta=-0.02, reason="mostpop low"),
        check("hr@10", "floor", 0.02, candidate=0.1, reason="ok"),
        check("ndcg@10", "min_gain", 0.01, passed=False, candidate=0.1, champion=0.1, delta=0.0,
              interval=[-0.004, 0.004], reason="lower bound -0.0040 < min_gain 0.0100")]
    blessing = section(render_report(evaluation), "blessing")
    assert 'class="decision fail">NOT_BLESSED<' in blessing and "2 of 3 checks failed: mostpop low" in blessing
    failed = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr class=\"fail\">(.*?)</tr>", blessing)]
    assert [row[5:] for row in failed] == [["0.1200", "-0.0200", "", "FAIL", "mostpop low"],
                                           ["", "+0.0000", "[-0.0040, +0.0040]", "FAIL",
                                            "lower bound -0.0040 &lt; min_gain 0.0100"]]
    assert blessing.count('<tr class="pass">') == 1


def test_each_model_keeps_its_colour_across_charts(page):
    by_k, slices = section(page, "by-k"), section(page, "slices")
    for colour in ("#1f5fbf", "#d95f02", "#666666"):  # candidate, champion, MostPop
        assert colour in by_k and colour in slices
    assert "#1b9e77" in by_k  # EASE
    assert "#7b3294" in by_k and "#7b3294" in slices  # the first model without a fixed colour


def test_first_night_explains_the_empty_sections():
    page = render_report(first_night())
    parsed = parse(page)
    assert parsed.h2_ids == SECTION_IDS
    assert parsed.svg_labels == ["NDCG@K by cut-off K", "HR@K by cut-off K",
                                 "NDCG@10 of cold and warm users, with and without backoff", "Training loss by step",
                                 "Validation NDCG by step"]
    assert "There is no champion to compare with yet (first night)" in section(page, "deltas")
    assert "No slices were computed for this night." in section(page, "slices")
    assert "The champion has one night of history so far" in section(page, "history")
    assert table_rows(section(page, "history")) == [["2026-02-27", "1", "0.0900", "0.1800"]]
    assert "Champion: none (first night)" in page
    assert 'class="decision fail">NOT_BLESSED<' in page
    assert re.findall(r'<tr class="skipped">(.*?)</tr>', section(page, "blessing"))
    assert "bootstrap rule (first night, no champion)" in section(page, "blessing")


def test_paired_deltas_missing_with_a_champion_say_so():
    evaluation = full_evaluation()
    evaluation["paired"] = {}
    assert "No paired candidate-vs-champion deltas were computed." in section(render_report(evaluation), "deltas")


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
    assert len(parsed.svg_labels) == 8
    assert "nan" not in page.lower()
    candidate_row = table_rows(section(page, "metrics"))[0]
    assert candidate_row[:4] == ["candidate", "n/a", "0.1797 [n/a, n/a]", "n/a"]
    assert ["hr@10", "n/a", "[n/a, n/a]", "no interval"] in table_rows(section(page, "deltas"))
    assert "n/a" in chart_texts(section(page, "slices"))  # the NaN bar is labelled, not drawn
    assert ["items", "n/a"] in table_rows(section(page, "data"))


def test_charts_without_data_say_so():
    evaluation = full_evaluation()
    evaluation["curve"] = [{"step": "1", "loss": "", "valid_ndcg": ""}]
    evaluation["history"] = [{"run_date": d, "version": 1, "ndcg@10": float("nan"), "hr@10": None}
                             for d in ("2026-02-28", "2026-03-01")]
    evaluation["paired"] = {"ndcg@10": {"delta": None, "low": None, "high": None}}
    page = render_report(evaluation)
    parse(page)
    assert "No loss values were recorded." in section(page, "training")
    assert "No validation NDCG values were recorded." in section(page, "training")
    assert "No champion metric was recorded" in section(page, "history")
    assert "No paired delta has a value." in section(page, "deltas")
    for anchor in ("training", "history", "deltas"):
        assert "<svg" not in section(page, anchor)


def test_almost_empty_evaluation_still_renders():
    page = render_report({"logical_date": "2026-03-02", "k": 10})
    parsed = parse(page)
    assert parsed.h2_ids == SECTION_IDS
    assert "svg" not in parsed.counts
    for sentence in ("No blessing decision was recorded for this night.", "No model metrics were recorded.",
                     "No metrics by K were recorded.", "There is no champion to compare with yet",
                     "No slices were computed for this night.", "The champion has no night of history so far",
                     "No training curve was recorded.", "No data summary was recorded."):
        assert sentence in page


def test_input_is_not_modified():
    evaluation = full_evaluation()
    before = copy.deepcopy(evaluation)
    render_report(evaluation)
    assert evaluation == before


def test_groups_show_the_strategies_the_choice_each_model_and_the_backoff(page):
    groups = section(page, "groups")
    assert "3 interest groups found with the candidate (sizes 400, 300, 243); 1 smaller than 20 users merged" in groups
    rows = {row[0]: row for row in table_rows(groups) if row}
    assert rows["gfar (serving)"][1:3] == ["0.0600", "0.0150"]  # validation mean- and least-member NDCG
    assert "average" in rows and "group_model" in rows
    assert rows["candidate"][1:] == ["0.0550 [0.0500, 0.0600]", "0.1500"]  # member_mean_ndcg@10, cold_ndcg@10
    assert rows["cold users (98): with backoff"][1:] == ["0.1500", "0.3000"]
    assert rows["cold users (98): MostPop"][1:] == ["0.1000", "0.2000"]
    assert "Backoff strength c = 5" in groups and "only users with at most 10 interactions blend" in groups
    assert ("Explicit groups are served with group_model; group_model adds EASE over the whole history of each group "
            "(L2 weight 500, blend weight 2, chosen on validation)") in groups


def test_a_night_without_groups_says_so():
    evaluation = {key: value for key, value in first_night().items() if key != "groups"}
    assert "No group evaluation was recorded for this night." in section(render_report(evaluation), "groups")
