"""bench/groups_consrec.py: a ConsRec-layout dataset in the canonical warehouse tables."""

import pandas as pd

from bench.groups_consrec import ORIGIN, import_consrec
from pipelines.datasets.consrec import load_consrec
from tests.pipelines.datasets.test_consrec import write_layout


def test_a_consrec_set_lands_in_the_canonical_tables_in_file_order(tmp_path):
    data = load_consrec(write_layout(tmp_path))
    url = f"sqlite:///{tmp_path}/warehouse.db"
    assert import_consrec(data, url) == "2020-01-02"  # the day after the last event
    table = {name: pd.read_sql(f"SELECT * FROM {name}", url)
             for name in ("users", "items", "interactions", "group_members", "group_events")}
    assert sorted(table["users"]["user_id"]) == ["10", "11", "12", "13", "14"]  # members without ratings too
    assert set(table["items"]["item_id"]) == {"100", "101", "102", "103", "104", "105"}
    assert table["items"].set_index("item_id").loc["100", "title"] == "Toy Story"
    assert table["interactions"]["item_id"].tolist() == ["100", "105", "102"]
    assert pd.to_datetime(table["interactions"]["ts"]).is_monotonic_increasing
    assert sorted(zip(table["group_members"]["group_id"], table["group_members"]["user_id"])) == [
        ("1", "10"), ("1", "11"), ("2", "12"), ("2", "13"), ("2", "14")]
    events = table["group_events"]
    assert list(zip(events["group_id"], events["item_id"])) == [("1", "100"), ("1", "101"), ("2", "102")]
    assert pd.to_datetime(events["ts"]).min() == pd.Timestamp(ORIGIN)
