"""Cold users back off to their interest group: simulated cold users on MovieLens.

    python bench/groups.py --cold DATASET_DIR [--budget-minutes M] [--out DIR]

ML-100K has no user with 5 ratings or fewer, so cold users are made, honestly, before any stage
reads the data: after the import, a seeded ``--cold-share`` (20%) of the users keep only their
last n training interactions (n uniform in 1..5, drawn per user) plus their validation and test
interactions (the last two by time, ties in event order, as the profiles stage splits); their
earlier events are deleted from the warehouse (``cold_plan``, ``truncate_warehouse``). The
platform's stages then train ours on that warehouse (``bench.groups_ours``), so the model never
saw the deleted events. A user with fewer than n + 2 events keeps them all.

Then, as a night's evaluation does (``pipelines/evaluate/groups.py``): interest groups are the
clusters of the candidate's user vectors of the training histories
(``pipelines.model.representations.user_vectors`` -> ``cluster_users(vectors, 0, max_groups=12,
seed=0)`` -> ``merge_small_groups(labels, vectors, 20)``); a user's served scores are
``blend_with_group`` of their own and their group's (``interest_group_scores``, all its members)
with ``backoff_weights(n, c, cap)``, n the interactions the scorer sees (training items for
validation, plus the validation item for the test), cap the platform's
``groups.backoff_max_interactions`` (users with more keep their own scores). c is chosen on validation NDCG@10 over all users
(``choose_strength`` over ``--strengths``), so warm users are not traded away. On the test
targets (full ranking, history excluded, ties against the target): cold users (<= 5 training
interactions) with backoff, without (c = 0) and MostPop (training counts); warm users with and
without. Bootstrap 95% intervals over users, and paired intervals of the differences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

K = 10
COLD_SHARE = 0.2
MAX_KEPT = 5
STRENGTHS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
MAX_GROUPS, MIN_GROUP_SIZE, CLUSTER_SEED = 12, 20, 0
BOOTSTRAP_RESAMPLES = 1000
COLD_OVER_MOSTPOP, WARM_TOLERANCE = 1.2, 0.01


def cold_plan(events, share: float, max_kept: int, seed: int) -> tuple[np.ndarray, dict[str, int]]:
    """Which events to delete so that a seeded ``share`` of the users keeps only n (uniform in
    1..``max_kept``) training events plus the validation and test events.

    Args:
        events: one row per interaction with ``event_id``, ``user_id`` and ``ts``.

    Returns:
        The event ids to delete, and each chosen user's n (its training interactions afterwards).
    """
    ordered = events.sort_values(["user_id", "ts", "event_id"], kind="stable")
    by_user = ordered.groupby("user_id", sort=True)["event_id"].agg(list)
    users = [u for u, ids in by_user.items() if len(ids) >= 3]  # who has a validation and a test item
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(users), size=int(round(share * len(users))), replace=False).tolist())
    kept = rng.integers(1, max_kept + 1, size=len(chosen))
    drop: list[int] = []
    plan: dict[str, int] = {}
    for index, n in zip(chosen, kept):
        ids = by_user[users[index]]
        keep = min(int(n) + 2, len(ids))
        drop += ids[:len(ids) - keep]
        plan[str(users[index])] = keep - 2
    return np.array(sorted(drop), dtype=np.int64), plan


def truncate_warehouse(url: str, share: float, max_kept: int, seed: int) -> dict[str, Any]:
    """``cold_plan`` applied to the warehouse's interactions (before any stage runs)."""
    from bench.groups_ours import delete_events, progress, warehouse_events

    events = warehouse_events(url)
    drop, plan = cold_plan(events, share, max_kept, seed)
    deleted = delete_events(url, drop)
    progress(f"cold users: {len(plan)} of {events['user_id'].nunique()} users cut to 1..{max_kept} training "
             f"interactions; {deleted} of {len(events)} events deleted")
    return {"users": len(plan), "events_before": int(len(events)), "events_deleted": int(deleted),
            "kept_training_interactions": {str(n): sum(v == n for v in plan.values()) for n in range(max_kept + 1)},
            "plan": plan}


def blended(scores: np.ndarray, labels: np.ndarray, n_groups: int, lengths: np.ndarray, rows: np.ndarray,
            strength: float, max_interactions: int | None = None) -> np.ndarray:
    """Scores of ``rows`` after backoff to their interest group (the group from all its members);
    rows with more than ``max_interactions`` keep their own."""
    from pipelines.groups.backoff import backoff_weights, blend_with_group, interest_group_scores

    if strength == 0:
        return scores[rows]
    group = interest_group_scores(scores, labels, n_groups)
    return blend_with_group(scores[rows], group[labels[rows]],
                            backoff_weights(lengths[rows], strength, max_interactions))


def outcomes(scores: np.ndarray, rows: np.ndarray, targets: np.ndarray, histories: Sequence[Sequence[int]],
             k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``rows`` (of ``scores``, ``targets`` and ``histories``), NDCG@k and HR@k of its
    target (full ranking, its history excluded, pessimistic ties)."""
    from pipelines.groups.evaluation import hit_at_k, ndcg_at_k, target_ranks

    if not len(rows):
        return np.empty(0), np.empty(0)
    ranks = target_ranks(scores[rows], targets[rows].tolist(), [list(histories[r]) for r in rows])
    return ndcg_at_k(ranks, k), hit_at_k(ranks, k)


def interest_groups(trained, histories: list[list[str]]) -> tuple[np.ndarray, int, dict[str, Any]]:
    """Labels of the candidate's interest groups, their number and what the JSON records."""
    from pipelines.groups.discovery import cluster_users, merge_small_groups
    from pipelines.model.recommender import Catalogue
    from pipelines.model.representations import user_vectors

    vectors = user_vectors(trained.model, Catalogue(trained.model, trained.item_ids, trained.texts), histories)
    clustering = cluster_users(vectors, 0, max_groups=MAX_GROUPS, seed=CLUSTER_SEED)
    labels, merged = merge_small_groups(clustering.labels, vectors, MIN_GROUP_SIZE)
    n_groups = int(labels.max()) + 1
    return labels, n_groups, {"groups": n_groups, "sizes": np.bincount(labels, minlength=n_groups).tolist(),
                              "silhouettes": {str(c): round(s, 4) for c, s in clustering.silhouettes.items()},
                              "merged_small_groups": merged, "max_groups": MAX_GROUPS,
                              "min_group_size": MIN_GROUP_SIZE, "seed": CLUSTER_SEED}


def interval_row(values: Mapping[str, np.ndarray], indices: np.ndarray) -> dict[str, Any]:
    from pipelines.evaluate.analysis import bootstrap_interval

    out: dict[str, Any] = {}
    for metric, v in values.items():
        out[metric] = round(float(np.mean(v)), 6) if len(v) else float("nan")
        out[f"{metric}_ci95"] = [round(x, 6) for x in bootstrap_interval(v, indices)]
    return out


def paired(a: np.ndarray, b: np.ndarray, indices: np.ndarray) -> dict[str, float]:
    from pipelines.evaluate.analysis import paired_difference

    return {key: round(value, 6) for key, value in paired_difference(a, b, indices).items()}


def run_cold(trained, args) -> dict[str, Any]:
    """The cold-user document for the model ``trained`` on the truncated warehouse."""
    from bench.groups_ours import progress, score_matrix
    from bench.groups_synthetic import population
    from pipelines.evaluate.analysis import resample_indices
    from pipelines.groups.backoff import choose_strength

    sequences = trained.profiles.sequences
    item_ids = trained.item_ids
    people = population(sequences, item_ids)
    labels_all, n_groups, groups_info = interest_groups(trained, [list(h) for h in sequences["train_items"]])
    # Interest groups and their scores come from every profiled user; the judged users are those
    # with both held-out items (on MovieLens: all of them).
    row_of = {u: r for r, u in enumerate(sequences["user_id"].astype(str))}
    labels = labels_all[[row_of[u] for u in people.user_ids]]
    scorer = trained.scorer()
    scores = {phase: score_matrix(scorer, people.scorer_histories(phase), len(item_ids))
              for phase in ("validation", "test")}
    lengths = {"validation": np.array([len(h) for h in people.train_items]),
               "test": np.array([len(h) + 1 for h in people.train_items])}
    everyone = np.arange(len(people.user_ids))
    cap = int(trained.params["groups"]["backoff_max_interactions"])  # the platform's setting, as a night serves

    def evaluate(phase: str, rows: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray]:
        histories, targets = people.phase(phase)
        mixed = blended(scores[phase], labels, n_groups, lengths[phase], rows, strength, cap)
        local = np.arange(len(rows))
        return outcomes(mixed, local, targets[rows], [histories[r] for r in rows])

    strength, curve = choose_strength(list(args.strengths),
                                      lambda c: float(evaluate("validation", everyone, c)[0].mean()))
    progress(f"backoff strength {strength:g} chosen on validation: {curve}")
    train_lengths = lengths["validation"]
    subsets = {"cold": everyone[train_lengths <= MAX_KEPT], "warm": everyone[train_lengths > MAX_KEPT]}
    # Never chosen on: how each segment's validation NDCG moves with c (what the choice trades off).
    by_segment = {segment: {f"{c:g}": round(float(evaluate("validation", rows, c)[0].mean()), 6) if len(rows) else None
                            for c in args.strengths} for segment, rows in subsets.items()}
    progress(f"validation NDCG@{K} by segment and c (diagnostic, not chosen on): {by_segment}")
    popularity = trained.profiles.items["train_count"].to_numpy().astype(np.float64)
    histories, targets = people.phase("test")
    segments: dict[str, Any] = {}
    for segment, rows in subsets.items():
        with_backoff = evaluate("test", rows, strength)
        without = evaluate("test", rows, 0.0)
        most_pop = outcomes(np.repeat(popularity[None, :], len(rows), axis=0), np.arange(len(rows)), targets[rows],
                            [histories[r] for r in rows])
        indices = resample_indices(len(rows), BOOTSTRAP_RESAMPLES, args.seed)
        rows_out = {}
        for label, (ndcg, hr) in (("with backoff", with_backoff), ("without", without), ("MostPop", most_pop)):
            rows_out[label] = interval_row({f"ndcg@{K}": ndcg, f"hr@{K}": hr}, indices)
        segments[segment] = {
            "users": int(len(rows)), **rows_out,
            "with_minus_without": {f"ndcg@{K}": paired(with_backoff[0], without[0], indices),
                                   f"hr@{K}": paired(with_backoff[1], without[1], indices)},
            "with_minus_MostPop": {f"ndcg@{K}": paired(with_backoff[0], most_pop[0], indices),
                                   f"hr@{K}": paired(with_backoff[1], most_pop[1], indices)}}
        progress(f"{segment} ({len(rows)} users): " + ", ".join(
            f"{label} NDCG@{K} {row[f'ndcg@{K}']:.4f}" for label, row in rows_out.items()))
    plan = trained.prepared.get("plan", {})
    cut = [people.user_ids.index(u) for u in plan if u in people.user_ids]
    return {
        "mode": "cold", "k": K,
        "protocol": {"cold_share": args.cold_share, "kept_training_interactions": f"uniform 1..{MAX_KEPT}",
                     "seed": args.seed, "cold_max_training_interactions": MAX_KEPT,
                     "strengths": list(args.strengths), "strength_chosen_on": f"validation ndcg@{K}, all users",
                     "truncation": {key: value for key, value in trained.prepared.items() if key != "plan"},
                     "truncated_users_with_planned_history": int(sum(
                         train_lengths[r] == plan[people.user_ids[r]] for r in cut)),
                     "users": len(people.user_ids), "items": len(item_ids), "bootstrap_resamples": BOOTSTRAP_RESAMPLES},
        "training": trained.training_summary(),
        "interest_groups": groups_info,
        "backoff": {"strength": strength, "max_interactions": cap, "validation": {f"{c:g}": round(v, 6) for c, v in curve.items()},
                    "validation_by_segment": by_segment},
        "segments": segments,
        "summary": cold_summary(segments),
    }


def cold_summary(segments: Mapping[str, Any]) -> dict[str, Any]:
    """The targets: cold with backoff >= 1.2x MostPop and above without; warm within 1% of without."""
    metric = f"ndcg@{K}"
    cold, warm = segments["cold"], segments["warm"]
    most_pop = cold["MostPop"][metric]
    ratio = cold["with backoff"][metric] / most_pop if most_pop else None
    warm_change = (warm["with backoff"][metric] / warm["without"][metric] - 1.0) if warm["without"][metric] else None
    return {
        "cold_over_MostPop": {"metric": metric, "ratio": None if ratio is None else round(ratio, 4),
                              "target": COLD_OVER_MOSTPOP, "met": ratio is not None and ratio >= COLD_OVER_MOSTPOP},
        "cold_above_without": {"metric": metric, "delta": cold["with_minus_without"][metric],
                               "met": cold["with backoff"][metric] > cold["without"][metric]},
        "warm_within_1pct": {"metric": metric,
                             "relative_change": None if warm_change is None else round(warm_change, 4),
                             "target": WARM_TOLERANCE,
                             "met": warm_change is not None and abs(warm_change) <= WARM_TOLERANCE},
    }


def format_table(document: Mapping[str, Any]) -> str:
    lines = [f"backoff strength c = {document['backoff']['strength']:g} (chosen on validation)",
             f"| users | model | NDCG@{K} (95% CI) | HR@{K} (95% CI) |", "|---|---|---|---|"]
    for segment, row in document["segments"].items():
        for label in ("with backoff", "without", "MostPop"):
            cells = [f"{row[label][m]:.4f} ({row[label][m + '_ci95'][0]:.4f}-{row[label][m + '_ci95'][1]:.4f})"
                     for m in (f"ndcg@{K}", f"hr@{K}")]
            lines.append(f"| {segment} ({row['users']}) | {label} | " + " | ".join(cells) + " |")
    for target, row in document["summary"].items():
        lines.append(f"{target}: {'met' if row['met'] else 'NOT met'} "
                     f"({', '.join(f'{k} {v}' for k, v in row.items() if k not in ('met', 'metric'))})")
    return "\n".join(lines)
