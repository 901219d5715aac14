"""``extract.mapping`` with the optional group tables.

``pipelines.core.warehouse.parse_mapping`` checks the three required tables; the explicit group
tables (``group_members``, ``group_events``) are parsed here in the same style: ``table``,
``schema``, ``columns`` (canonical -> warehouse; an optional column mapped to null is absent), and
on ``group_events`` its own ``event_types`` renaming. They are mapped together or not at all: a
mapping without them extracts exactly what it did before groups existed. A mapped table is
checked against the live catalogue like the others (``warehouse.reflect_tables``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.core import schema, warehouse
from pipelines.core.io import NonRetryableError

GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "group_members": schema.GROUP_MEMBER_COLUMNS,
    "group_events": schema.GROUP_EVENT_COLUMNS,
}
GROUP_OPTIONAL_COLUMNS: dict[str, frozenset[str]] = {
    "group_members": frozenset({"joined_at", "left_at"}),
    "group_events": frozenset(),
}


@dataclass(frozen=True)
class ExtractMapping(warehouse.SourceMapping):
    """The whole ``extract.mapping``: ``tables`` also holds the group tables when they are mapped."""

    group_event_types: dict[str, str] = field(default_factory=dict)  # warehouse value -> canonical type

    @property
    def has_groups(self) -> bool:
        return all(table in self.tables for table in schema.GROUP_TABLES)


def parse_extract_mapping(raw: Any) -> ExtractMapping:
    """Validates ``extract.mapping`` without touching the database; absent entries are identity,
    absent group entries mean no group tables.

    Raises:
        NonRetryableError: naming the params key and the offending value.
    """
    if not isinstance(raw, dict):
        base = warehouse.parse_mapping(raw)  # None is the identity mapping; anything else is refused there
        return ExtractMapping(dict(base.tables), base.event_types, base.rating_scale)
    known = [*warehouse.CANONICAL_COLUMNS, *schema.GROUP_TABLES]
    unknown = set(raw) - set(known)
    if unknown:
        raise NonRetryableError(f"extract.mapping: unknown table key(s) {sorted(unknown)}; expected {sorted(known)}")
    groups = {key: raw[key] for key in schema.GROUP_TABLES if key in raw}
    base = warehouse.parse_mapping({key: value for key, value in raw.items() if key not in groups})
    if groups and len(groups) < len(schema.GROUP_TABLES):
        missing = [key for key in schema.GROUP_TABLES if key not in groups]
        raise NonRetryableError(f"extract.mapping: {', '.join(groups)} is mapped without {', '.join(missing)}; "
                                "map both group tables or neither")
    entries = {key: warehouse.mapping_entry(groups[key], f"extract.mapping.{key}") for key in groups}
    tables = {**base.tables, **{key: _parse_group_table(key, entry) for key, entry in entries.items()}}
    event_types = _parse_event_types(entries.get("group_events", {}).get("event_types"))
    return ExtractMapping(tables, base.event_types, base.rating_scale, event_types)


def _parse_group_table(key: str, entry: dict) -> warehouse.TableMapping:
    extras = {"event_types"} if key == "group_events" else set()
    table, schema_name, columns = warehouse.parse_table_entry(key, entry, GROUP_COLUMNS[key],
                                                              GROUP_OPTIONAL_COLUMNS[key], extras)
    return warehouse.TableMapping(key, table, schema_name, columns)


def _parse_event_types(raw: Any) -> dict[str, str]:
    where = "extract.mapping.group_events.event_types"
    renames = warehouse.mapping_entry(raw, where)
    for source, target in renames.items():
        if target not in schema.EVENT_TYPES:
            raise NonRetryableError(f"{where}.{source}: {target!r} is not a canonical event type "
                                    f"{list(schema.EVENT_TYPES)}")
    return {str(source): target for source, target in renames.items()}
