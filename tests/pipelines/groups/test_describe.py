from pipelines.groups.describe import by_lift, describe_group, member_share, summary_text


def test_a_group_is_described_by_what_its_members_choose_more_than_everyone():
    group = [["hit", "cult"], ["hit", "cult", "odd"], ["hit", "cult"], ["hit"]]
    others = [["hit"], ["hit", "blockbuster"], ["hit"], ["blockbuster"]]
    titles = {"hit": "Big Hit", "cult": "Cult Film", "odd": "Odd One", "blockbuster": "Blockbuster"}
    categories = {"hit": "comedy", "cult": "horror|comedy", "odd": "drama", "blockbuster": "action"}
    profile = describe_group(group, group + others, titles, categories, top_items=2, top_categories=2)
    assert profile["size"] == 4
    assert [i["item_id"] for i in profile["representative_items"]] == ["cult", "hit"]  # one member's "odd" is too few
    assert [c["category"] for c in profile["top_categories"]] == ["horror", "comedy"]
    assert profile["summary"] == '4 users drawn to horror and comedy; they pick "Cult Film" and "Big Hit" far more ' \
                                 'often than others.'


def test_lift_needs_support_and_breaks_ties_by_members():
    group = member_share([["a", "b"], ["a", "b"], ["a"], ["c"]])
    everyone = member_share([["a", "b"], ["a", "b"], ["a"], ["c"], ["x"]])
    # a and b have the same lift; a has 3 members, b 2; c has one member, under the support of 2
    assert by_lift(group, everyone, 4, 5, top=5) == [("a", 1.25), ("b", 1.25)]


def test_a_summary_without_evidence_says_only_the_size():
    assert summary_text(25, [], []) == "25 users."
