"""``extract.mapping`` with the optional group tables: parsed in the style of the others, both or neither."""

from __future__ import annotations

import pytest
import yaml

from pipelines.config import ParamsError, parse_params
from pipelines.core import schema, warehouse
from pipelines.core.io import NonRetryableError
from pipelines.extract.mapping import parse_extract_mapping
from tests.conftest import PROJECT_ROOT

SHIPPED = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
GROUPS = {"group_members": {"table": "households", "schema": "crm",
                            "columns": {"group_id": "hh", "user_id": "person", "joined_at": "since", "left_at": None}},
          "group_events": {"table": "household_orders", "columns": {"group_id": "hh", "item_id": "sku",
                                                                     "event_type": "kind", "ts": "at"},
                           "event_types": {"buy": "purchase"}}}


def test_a_mapping_without_groups_is_the_required_tables_alone():
    for raw in (None, {}, {"items": {"table": "products"}}):
        parsed = parse_extract_mapping(raw)
        assert not parsed.has_groups and parsed.group_event_types == {}
        assert parsed.tables == warehouse.parse_mapping(raw).tables


def test_the_shipped_mapping_maps_the_group_tables_by_their_canonical_names():
    parsed = parse_extract_mapping(SHIPPED["extract"]["mapping"])
    assert parsed.has_groups
    assert {key: (m.table, m.columns) for key, m in parsed.tables.items() if key in schema.GROUP_TABLES} == {
        "group_members": ("group_members", {name: name for name in schema.GROUP_MEMBER_COLUMNS}),
        "group_events": ("group_events", {name: name for name in schema.GROUP_EVENT_COLUMNS})}


def test_group_tables_take_their_own_names_columns_and_event_types():
    parsed = parse_extract_mapping(GROUPS)
    members, events = parsed.tables["group_members"], parsed.tables["group_events"]
    assert (members.table, members.schema, members.columns) == (
        "households", "crm", {"group_id": "hh", "user_id": "person", "joined_at": "since", "left_at": None})
    assert (events.table, events.schema, events.columns["ts"]) == ("household_orders", None, "at")
    assert parsed.group_event_types == {"buy": "purchase"} and parsed.event_types == {}


@pytest.mark.parametrize("mapping, message", [
    ({"group_members": {}}, r"extract\.mapping: group_members is mapped without group_events; map both"),
    ({"group_events": {}}, r"extract\.mapping: group_events is mapped without group_members"),
    ({"groups": {}}, r"unknown table key\(s\) \['groups'\]; expected .*'group_events', 'group_members'"),
    ({**GROUPS, "group_members": {"tabel": "x"}}, r"extract\.mapping\.group_members: unknown key\(s\) \['tabel'\]"),
    ({**GROUPS, "group_members": {"event_types": {}}}, r"group_members: unknown key\(s\) \['event_types'\]"),
    ({**GROUPS, "group_events": {"columns": {"user_id": "x"}}},
     r"extract\.mapping\.group_events\.columns: unknown canonical column\(s\) \['user_id'\]"),
    ({**GROUPS, "group_events": {"columns": {"ts": None}}}, r"extract\.mapping\.group_events\.columns\.ts is required"),
    ({**GROUPS, "group_members": {"columns": {"user_id": None}}},
     r"extract\.mapping\.group_members\.columns\.user_id is required"),
    ({**GROUPS, "group_events": {"event_types": {"pv": "pageview"}}},
     r"extract\.mapping\.group_events\.event_types\.pv: 'pageview' is not a canonical event type"),
    ({**GROUPS, "group_events": {"table": "orders; DROP TABLE x"}},
     r"extract\.mapping\.group_events\.table: 'orders; DROP TABLE x' is not a plain identifier"),
    ({**GROUPS, "group_members": {"schema": "a.b"}}, r"extract\.mapping\.group_members\.schema: 'a\.b'"),
    ({**GROUPS, "group_members": ["hh"]}, r"extract\.mapping\.group_members must be a mapping, got list"),
])
def test_bad_group_mappings_are_refused_naming_the_key(mapping, message):
    with pytest.raises(NonRetryableError, match=message):
        parse_extract_mapping(mapping)


def test_the_required_tables_are_still_checked_beside_the_group_tables():
    with pytest.raises(NonRetryableError, match=r"extract\.mapping\.items\.table: 'a b'"):
        parse_extract_mapping({**GROUPS, "items": {"table": "a b"}})


def test_params_loading_reports_a_bad_group_mapping_with_its_key():
    raw = {**SHIPPED, "extract": {**SHIPPED["extract"], "mapping": {**SHIPPED["extract"]["mapping"],
                                                                    "group_events": {"columns": {"ts": None}}}}}
    with pytest.raises(ParamsError, match=r"extract\.mapping\.group_events\.columns\.ts is required"):
        parse_params(raw, environ={})
