"""A plain reference for pipelines.ranking.metrics, written from the definitions with loops and no numpy.

For each user: drop the history (a relevant item is never dropped), sort the rest by score with
relevant items after non-relevant ones on ties, walk that list for the accuracy metrics, and take the
recommendations as the same items sorted by score with ties in column order.
"""

from __future__ import annotations

import math

HEAD_SHARE = 0.2
ACCURACY = ("ndcg", "hr", "mrr", "recall", "precision")
LISTS = ("coverage", "novelty", "popularity_bias")


def user_accuracy(ranking: list[int], relevant: set[int], k: int) -> dict[str, float]:
    hit_ranks = [position for position, item in enumerate(ranking[:k]) if item in relevant]
    dcg = sum(1 / math.log2(position + 2) for position in hit_ranks)
    ideal = sum(1 / math.log2(position + 2) for position in range(min(len(relevant), k)))
    return {
        "ndcg": dcg / ideal,
        "hr": 1.0 if hit_ranks else 0.0,
        "mrr": 1 / (hit_ranks[0] + 1) if hit_ranks else 0.0,
        "recall": len(hit_ranks) / len(relevant),
        "precision": len(hit_ranks) / k,
    }


def reference_metrics(scores: list[list[float]], relevant: list[set[int]], excluded: list[set[int]],
                      n_items: int, ks: list[int], popularity: list[int], n_train_users: int
                      ) -> dict[str, float]:
    rankings, recommendations = [], []
    for row, rel, exc in zip(scores, relevant, excluded):
        kept = [item for item in range(n_items) if item in rel or item not in exc]
        rankings.append(sorted(kept, key=lambda item: (-row[item], item in rel, item)))
        recommendations.append(sorted(kept, key=lambda item: (-row[item], item)))

    by_popularity = sorted(range(n_items), key=lambda item: (-popularity[item], item))
    head = set(by_popularity[:max(1, round(HEAD_SHARE * n_items))])
    information = [-math.log2(min(max(count, 1), n_train_users) / n_train_users) for count in popularity]

    result: dict[str, float] = {}
    scored = [(ranking, rel) for ranking, rel in zip(rankings, relevant) if rel]
    for name in ACCURACY:
        for k in ks:
            values = [user_accuracy(ranking, rel, k)[name] for ranking, rel in scored]
            result[f"{name}@{k}"] = sum(values) / len(values) if values else 0.0
    for k in ks:
        slots = [item for recs in recommendations for item in recs[:k]]
        result[f"coverage@{k}"] = len(set(slots)) / n_items
        result[f"novelty@{k}"] = sum(information[item] for item in slots) / len(slots) if slots else 0.0
        result[f"popularity_bias@{k}"] = sum(item in head for item in slots) / len(slots) if slots else 0.0
    result["users"] = len(scored)
    return result
