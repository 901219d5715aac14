import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from pipelines.groups.discovery import (MIN_MATCH_JACCARD, cluster_users, membership_churn, merge_small_groups,
                                        stable_ids)


def blobs(sizes, dim=8, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:len(sizes)] * 3.0
    points = np.concatenate([centres[g] + spread * rng.standard_normal((n, dim)) for g, n in enumerate(sizes)])
    return points, np.repeat(np.arange(len(sizes)), sizes)


def test_the_number_of_groups_is_found_from_the_silhouette_and_the_groups_recovered():
    points, truth = blobs([40, 30, 50, 25])
    found = cluster_users(points, 0, max_groups=8, seed=0)
    assert found.labels.max() + 1 == 4
    assert adjusted_rand_score(truth, found.labels) == pytest.approx(1.0)
    assert set(found.silhouettes) == set(range(2, 9))
    assert np.allclose(np.linalg.norm(found.centroids, axis=1), 1.0)


def test_silhouettes_from_the_distances_computed_once_equal_scikit_learn_s_cosine_ones():
    from sklearn.metrics import silhouette_score

    from pipelines.groups.discovery import cosine_distances, unit_rows

    rng = np.random.default_rng(1)
    points = unit_rows(np.vstack([rng.standard_normal((60, 8)), np.zeros((2, 8))]))  # zero rows: no items
    labels = rng.integers(0, 3, len(points))
    assert silhouette_score(cosine_distances(points), labels, metric="precomputed") == pytest.approx(
        silhouette_score(points, labels, metric="cosine"), abs=1e-12)


def test_a_large_crowd_searches_on_a_sample_and_labels_every_user(monkeypatch):
    from pipelines.groups import discovery

    monkeypatch.setattr(discovery, "SWEEP_SAMPLE", 60)
    points, truth = blobs([100, 80, 120])
    found = cluster_users(points, 0, max_groups=6, seed=0)
    assert set(found.silhouettes) == set(range(2, 7)) and found.labels.max() + 1 == 3
    assert len(found.labels) == 300 and adjusted_rand_score(truth, found.labels) == pytest.approx(1.0)


def test_a_fixed_number_of_groups_skips_the_search():
    points, _ = blobs([20, 20, 20])
    found = cluster_users(points, 2, max_groups=8, seed=0)
    assert found.labels.max() + 1 == 2 and found.silhouettes == {}


def test_clustering_a_heavy_user_counts_their_direction_not_their_length():
    points, truth = blobs([30, 30])
    points[0] *= 50.0  # a heavy user's vector is longer, not elsewhere
    assert adjusted_rand_score(truth, cluster_users(points, 2, max_groups=4, seed=0).labels) == pytest.approx(1.0)


@pytest.mark.parametrize("users, n_groups, message", [(1, 0, "at least 2"), (5, 6, "only 5 users")])
def test_impossible_clusterings_are_named(users, n_groups, message):
    with pytest.raises(ValueError, match=message):
        cluster_users(np.ones((users, 3)), n_groups, max_groups=4, seed=0)


def test_small_groups_merge_into_the_nearest_and_labels_follow_size():
    points, truth = blobs([50, 30, 5])
    points[truth == 2] = points[truth == 1][:5] + 0.01  # the small group sits next to group 1
    labels, merged = merge_small_groups(truth, points, min_size=20)
    assert merged == 1
    assert np.bincount(labels).tolist() == [50, 35]  # renumbered by size, the small one inside group 1's
    assert set(labels[truth == 2]) == set(labels[truth == 1])


def test_with_fewer_users_than_the_minimum_one_group_remains():
    points, truth = blobs([4, 3, 2])
    labels, merged = merge_small_groups(truth, points, min_size=20)
    assert merged == 2 and set(labels.tolist()) == {0}


def test_tonight_groups_keep_last_night_ids_by_member_overlap():
    previous = {7: {"a", "b", "c", "d"}, 9: {"e", "f", "g"}}
    tonight = {0: {"e", "f", "g", "h"}, 1: {"a", "b", "c"}, 2: {"x", "y", "z"}}
    assert stable_ids(tonight, previous, next_id=12) == {0: 9, 1: 7, 2: 12}


def test_a_weak_overlap_is_a_new_group_and_no_id_is_reused():
    previous = {1: {f"u{i}" for i in range(10)}}
    tonight = {0: {"u0"} | {f"n{i}" for i in range(9)}}  # Jaccard 1/19
    assert 1 / 19 < MIN_MATCH_JACCARD
    assert stable_ids(tonight, previous, next_id=5) == {0: 5}
    assert stable_ids(tonight, {}, next_id=3) == {0: 3}


def test_churn_counts_users_of_both_nights_who_moved():
    churn = membership_churn({"a": 1, "b": 1, "c": 2, "gone": 3}, {"a": 1, "b": 2, "c": 2, "new": 4})
    assert churn == {"users_in_both": 3, "moved": 1, "churn": pytest.approx(1 / 3), "groups_kept": 2,
                     "groups_new": 1, "groups_gone": 1}
