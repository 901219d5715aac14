import numpy as np

from pipelines.groups.sampling import sample_groups


def test_evaluation_groups_share_an_interest_group_and_have_their_size():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 5)
    groups = sample_groups(labels, [2, 4, 8], per_size=30, seed=1)
    assert [len(g) for g in groups] == [2] * 30 + [4] * 30 + [8] * 30
    for rows in groups:
        assert len(set(labels[rows].tolist())) == 1 and len(set(rows.tolist())) == len(rows)
    assert all(set(labels[g].tolist()) == {0} for g in groups if len(g) == 8)  # only group 0 has 8 members


def test_sampling_is_seeded_and_sizes_nobody_can_fill_give_nothing():
    labels = np.array([0] * 6 + [1] * 6)
    first, again = sample_groups(labels, [3], 5, seed=4), sample_groups(labels, [3], 5, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert sample_groups(labels, [7], 5, seed=0) == [] and sample_groups(labels, [2], 0, seed=0) == []
