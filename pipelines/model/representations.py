"""Users as the model sees them: the next-item query and one vector per user, from the sequence
encoder's own states.

Interest groups are clusters of user vectors. The next-item query alone (the state after the
last item) follows the user's latest item closely; the mean of the states over the whole history
is the user's standing taste, which is what a group shares. The mean of the learned item vectors
of the history (ID and text) is a second view of the same taste; the two, each scaled to unit
length, side by side, recover the synthetic warehouse's planted groups better than either alone.

``EncodedUsers`` is how evaluate and publish score a model that no longer changes: the recency
prior's choice, the ranking, the group metrics and the interest groups all read the same
histories, and the encoder pass is the costly part, so each distinct history is encoded once.
"""

from __future__ import annotations

import numpy as np
import torch

from pipelines.model.recommender import Catalogue, SequenceRecommender

USER_CHUNK = 1024  # users per encoder call
# Histories whose encoder outputs are kept (3 * hidden_dim floats each: about 230 MB at 384 and
# this many); beyond it a history is encoded each time it is asked for.
MAX_REMEMBERED = 50_000
QUERY, TASTE, ITEMS = 0, 1, 2


class EncodedUsers:
    """A frozen model's scorer (``pipelines.ranking.scoring.Scorer``) and user vectors, sharing one
    encoder pass per distinct history (its last ``max_seq_len`` known items).

    Only for weights that no longer change: training's validation scorer must not remember.
    """

    def __init__(self, model: SequenceRecommender, catalogue: Catalogue, text_vectors: torch.Tensor | None = None,
                 max_remembered: int = MAX_REMEMBERED) -> None:
        model.eval()
        self.model, self.catalogue, self.max_remembered = model, catalogue, max_remembered
        with torch.no_grad():
            self.table = catalogue.item_table(catalogue.text_vectors() if text_vectors is None else text_vectors)
        self._remembered: dict[tuple[int, ...], torch.Tensor] = {}  # rows -> (3, hidden): query, taste, items
        self.encoded = 0  # histories run through the encoder (for tests and logs)

    def __call__(self, histories: list[list[str]]) -> torch.Tensor:
        """(users, items) scores of every catalogue item, on the CPU."""
        with torch.no_grad():
            return (self.states(histories)[:, QUERY] @ self.table[1:].T).float().cpu()

    def user_vectors(self, histories: list[list[str]], chunk: int = USER_CHUNK) -> np.ndarray:
        """(users, 2 * hidden_dim) float32: each user's encoder states averaged over their history's
        positions, then the mean of those items' vectors, each half of unit length. A user with no
        known item gets zeros."""
        parts = [self.states(histories[start:start + chunk])[:, TASTE:].flatten(1).float().cpu()
                 for start in range(0, len(histories), chunk)]
        if not parts:
            return np.zeros((0, 2 * self.model.config.hidden_dim), dtype=np.float32)
        return torch.cat(parts).numpy()

    def states(self, histories: list[list[str]]) -> torch.Tensor:
        """(users, 3, hidden_dim): the query, the unit taste and the unit item mean of each history."""
        rows = self.catalogue.rows_for(histories, self.model.config.max_seq_len)
        keys = [tuple(r[:n].tolist()) for r, n in zip(rows, (rows > 0).sum(1).tolist())]
        missing = list(dict.fromkeys(key for key in keys if key not in self._remembered))
        fresh = dict(zip(missing, self._encode(rows, keys, missing))) if missing else {}
        for key, value in fresh.items():
            if len(self._remembered) >= self.max_remembered:
                break
            self._remembered[key] = value
        if not keys:
            return self.table.new_zeros(0, 3, self.table.shape[1])
        return torch.stack([fresh[key] if key in fresh else self._remembered[key] for key in keys])

    def _encode(self, rows: torch.Tensor, keys: list[tuple[int, ...]], missing: list[tuple[int, ...]]
                ) -> list[torch.Tensor]:
        first = {}
        for index, key in enumerate(keys):
            first.setdefault(key, index)
        batch = rows[[first[key] for key in missing]].to(self.table.device)
        width = max(int((batch > 0).sum(1).max()), 1)  # right-padded and causal: cutting the padding changes nothing
        batch = batch[:, :width]
        with torch.no_grad():
            states = self.model.encode_sequences(self.table, batch)
            self.encoded += len(batch)
            last = ((batch > 0).sum(1) - 1).clamp(min=0)
            real = (batch > 0).unsqueeze(-1).to(states.dtype)
            count = real.sum(1).clamp(min=1.0)
            query = states[torch.arange(len(batch), device=batch.device), last]
            taste = _unit((states * real).sum(1) / count)
            items = _unit((self.table[batch] * real).sum(1) / count)
        return list(torch.stack([query, taste, items], dim=1).unbind(0))


def user_vectors(model: SequenceRecommender, catalogue: Catalogue, histories: list[list[str]],
                 text_vectors: torch.Tensor | None = None, chunk: int = USER_CHUNK) -> np.ndarray:
    """``EncodedUsers.user_vectors`` without keeping anything (one pass over ``histories``)."""
    return EncodedUsers(model, catalogue, text_vectors, max_remembered=0).user_vectors(histories, chunk)


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)
