"""The validation history page (pipelines.validate.history): what it says and marks, never where it draws it."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from pipelines.validate.history import HistoryChart, render_validation_history

SCRIPT = "<script>alert(1)</script>"
NAMESPACE = re.compile(r'\sxmlns(:\w+)?="http://www\.w3\.org/[^"]*"')
ROWS = [  # as the CSV holds them: text, "" where a check was skipped
    {"logical_date": "2026-03-01", "success": "True", "top_user_share": "0.1", "popularity_js": "0.10", "new": ""},
    {"logical_date": "2026-03-02", "success": "False", "top_user_share": "0.6", "popularity_js": "", "new": ""},
    {"logical_date": "2026-03-03", "success": "True", "top_user_share": "0.12", "popularity_js": "0.12", "new": ""},
]
CHARTS = [
    HistoryChart("top_user_share", "Busiest user's share", ((0.5, "validate.max_user_share = 0.5"),)),
    HistoryChart("popularity_js", "Popularity drift", ((0.9, "validate.drift.max_popularity_js = 0.9"),)),
    HistoryChart("new", "Share of new users"),
]


class ChartText(HTMLParser):
    """The text drawn inside the <svg> charts (ticks, labels), unescaped."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "text" and "svg" in self.stack:
            self.text.append(data)


def chart_text(html_text: str) -> list[str]:
    parser = ChartText()
    parser.feed(html_text)
    return parser.text


def sections(page: str) -> dict[str, str]:
    """Chart section id (the history column) -> its HTML."""
    return dict(re.findall(r'<section><h2 id="([^"]+)">(.*?)</section>', page, flags=re.S))


def numbers(texts: list[str]) -> list[float]:
    return [float(t.replace("\u2212", "-")) for t in texts if re.fullmatch(r"\u2212?[0-9.]+", t)]


def test_the_summary_names_the_nights_and_the_failed_ones() -> None:
    page = render_validation_history(ROWS, CHARTS)
    assert "<h1>Validation statistics across nights</h1>" in page
    assert "3 nights, 2026-03-01 to 2026-03-03; 1 failed (shaded in every chart): 2026-03-02." in page


def test_every_chart_is_inline_svg_with_the_failed_night_marked() -> None:
    charts = sections(render_validation_history(ROWS, CHARTS))
    assert list(charts) == ["top_user_share", "popularity_js", "new"]
    for column, title in (("top_user_share", "Busiest user&#x27;s share"), ("popularity_js", "Popularity drift")):
        chart = charts[column]
        assert re.search(rf'<figure><svg class="chart" role="img" aria-label="{title}"', chart), column
        assert chart.count('<g class="mark">') == 1
        assert chart.count("<title>failed night 2026-03-02</title>") == 1
        assert {"2026-03-01", "2026-03-02", "2026-03-03"} <= set(chart_text(chart))  # the nights on the x axis


def test_each_threshold_is_drawn_labelled_and_inside_the_axis() -> None:
    charts = sections(render_validation_history(ROWS, CHARTS))
    for column, value, label in (("top_user_share", 0.5, "validate.max_user_share = 0.5"),
                                 ("popularity_js", 0.9, "validate.drift.max_popularity_js = 0.9")):
        chart = charts[column]
        assert chart.count('<g class="threshold">') == 1
        assert f'<g class="threshold"><title>{label}</title>' in chart
        assert label in chart_text(chart)
        ticks = numbers(chart_text(chart))
        assert min(ticks) <= value <= max(ticks), (column, ticks)  # the axis reaches the threshold


def test_a_column_without_any_value_says_so() -> None:
    chart = sections(render_validation_history(ROWS, CHARTS))["new"]
    assert "No night recorded a value for new." in chart and "<svg" not in chart


def test_without_a_failed_night_nothing_is_marked() -> None:
    rows = [{**row, "success": "True"} for row in ROWS]
    page = render_validation_history(rows, CHARTS)
    assert "3 nights, 2026-03-01 to 2026-03-03; none failed." in page
    assert "failed night" not in page and 'class="mark"' not in page


def test_no_night_yet() -> None:
    page = render_validation_history([], CHARTS)
    assert "no night yet; none failed." in page
    assert "<svg" not in page
    for chart in CHARTS:
        assert f"No night recorded a value for {chart.column}." in page


def test_the_page_is_self_contained_and_deterministic() -> None:
    page = render_validation_history(ROWS, CHARTS)
    lowered = NAMESPACE.sub("", page).lower()
    assert "http" not in lowered and "<script" not in lowered and "<link" not in lowered and " src=" not in lowered
    assert set(re.findall(r"url\((.)", lowered)) <= {"#"}
    assert page == render_validation_history(ROWS, CHARTS)


def test_input_strings_are_escaped() -> None:
    rows = [{**row, "logical_date": f"{row['logical_date']} {SCRIPT}"} for row in ROWS]
    page = render_validation_history(rows, [HistoryChart("top_user_share", SCRIPT, ((0.5, SCRIPT),))])
    assert "<script" not in page.lower()
    escaped = SCRIPT.replace("<", "&lt;").replace(">", "&gt;")
    assert f"<title>failed night 2026-03-02 {escaped}</title>" in page
    assert f"<h2 id=\"top_user_share\">{escaped}</h2>" in page
    assert f"1 failed (shaded in every chart): 2026-03-02 {escaped}." in page
