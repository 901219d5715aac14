"""Users as the model sees them: one vector per user, from the sequence encoder's own states.

Interest groups are clusters of these vectors. The next-item query alone (the state after the
last item) follows the user's latest item closely; the mean of the states over the whole history
is the user's standing taste, which is what a group shares. The mean of the learned item vectors
of the history (ID and text) is a second view of the same taste; the two, each scaled to unit
length, side by side, recover the synthetic warehouse's planted groups better than either alone.
"""

from __future__ import annotations

import numpy as np
import torch

from pipelines.model.recommender import Catalogue, SequenceRecommender

USER_CHUNK = 1024  # users per encoder call


def user_vectors(model: SequenceRecommender, catalogue: Catalogue, histories: list[list[str]],
                 text_vectors: torch.Tensor | None = None, chunk: int = USER_CHUNK) -> np.ndarray:
    """(users, 2 * hidden_dim) float32: each user's encoder states averaged over their history's
    positions (the last ``max_seq_len`` known items), then the mean of those items' vectors, each
    half of unit length. A user with no known item gets zeros. ``text_vectors`` reuses the
    catalogue's text vectors where they were computed already."""
    model.eval()
    device = next(model.parameters()).device
    parts = []
    with torch.no_grad():
        table = catalogue.item_table(catalogue.text_vectors() if text_vectors is None else text_vectors)
        for start in range(0, len(histories), chunk):
            rows = catalogue.rows_for(histories[start:start + chunk], model.config.max_seq_len).to(device)
            states = model.encode_sequences(table, rows)
            real = (rows > 0).unsqueeze(-1).to(states.dtype)
            count = real.sum(1).clamp(min=1.0)
            taste = (states * real).sum(1) / count
            items = (table[rows] * real).sum(1) / count
            parts.append(torch.cat([_unit(taste), _unit(items)], dim=1).float().cpu())
    if not parts:
        return np.zeros((0, 2 * model.config.hidden_dim), dtype=np.float32)
    return torch.cat(parts).numpy()


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)
