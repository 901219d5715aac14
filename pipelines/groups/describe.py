"""A readable profile of an interest group: what its members choose more than everyone else does.

Categories and items are ranked by *lift*: the share of the group's members who chose them over
the share of all users who did, counted once per member, so that the catalogue's blockbusters
(which every group watches) do not describe every group alike. An item needs a few members
(``MIN_SUPPORT_SHARE`` of the group) to count, so one member's odd choice never describes a group.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

MIN_SUPPORT_SHARE = 0.05  # of the group's members, at least 2
CATEGORY_SEPARATOR = "|"


def member_share(histories: Sequence[Sequence[str]]) -> Counter:
    """How many of these users chose each value at least once."""
    counts: Counter = Counter()
    for history in histories:
        counts.update(set(history))
    return counts


def by_lift(group: Counter, everyone: Counter, group_size: int, population: int, top: int) -> list[tuple[str, float]]:
    """The ``top`` values with the highest lift (ties: more members, then name), with their lift."""
    support = max(2, int(MIN_SUPPORT_SHARE * group_size + 0.5))
    lifts = [(value, (count / group_size) / (everyone[value] / population))
             for value, count in group.items() if count >= support and everyone[value]]
    lifts.sort(key=lambda pair: (-pair[1], -group[pair[0]], pair[0]))
    return [(value, round(lift, 2)) for value, lift in lifts[:top]]


def describe_group(member_histories: Sequence[Sequence[str]], all_histories: Sequence[Sequence[str]],
                   titles: Mapping[str, str], categories: Mapping[str, str], *, top_items: int,
                   top_categories: int) -> dict:
    """Size, top categories, representative items and a one-sentence summary of one group."""
    def category_lists(histories: Sequence[Sequence[str]]) -> list[list[str]]:
        return [[c for item in history for c in str(categories.get(item) or "").split(CATEGORY_SEPARATOR) if c]
                for history in histories]

    size, population = len(member_histories), len(all_histories)
    cats = by_lift(member_share(category_lists(member_histories)), member_share(category_lists(all_histories)),
                   size, population, top_categories)
    items = by_lift(member_share(member_histories), member_share(all_histories), size, population, top_items)
    return {
        "size": size,
        "top_categories": [{"category": c, "lift": lift} for c, lift in cats],
        "representative_items": [{"item_id": i, "title": titles.get(i, i), "lift": lift} for i, lift in items],
        "summary": summary_text(size, [c for c, _ in cats], [titles.get(i, i) for i, _ in items]),
    }


def summary_text(size: int, categories: Sequence[str], titles: Sequence[str]) -> str:
    """E.g. '212 users drawn to mystery and thriller; they pick "Hidden Case" and "Cold Target" far
    more often than others.'"""
    text = f"{size} users"
    if categories:
        text += f" drawn to {_join(list(categories))}"
    if titles:
        quoted = ['"' + title + '"' for title in titles[:3]]
        text += f"; they pick {_join(quoted)} far more often than others"
    return text + "."


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
