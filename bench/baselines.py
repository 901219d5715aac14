"""Baselines of the quality benchmark: MostPop, EASE and SASRec trained with full cross-entropy.

Every baseline ends up as a ``pipelines.ranking.scoring.Scorer`` (histories -> one score per catalogue
item), so it is ranked and measured by exactly the code that measures the platform's own model
(``evaluate_scorer``: full catalogue, history excluded, pessimistic ties).

Nothing here reads test targets: tuning and model selection use the validation targets of the
profiles split only (history = training items); the test history is training + validation items.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.evaluate.baselines import column_index, train_histories
from pipelines.evaluate.baselines import fit_ease as nightly_ease
from pipelines.ranking.scoring import Scorer, evaluate_scorer, most_popular_scorer, validation_set

log = logging.getLogger("bench.baselines")

EASE_LAMBDAS: tuple[float, ...] = (10, 50, 100, 200, 500, 1000, 2000, 5000)


@dataclass
class Fitted:
    """A trained baseline: the scorer for the test histories and what it cost to get there."""

    scorer: Scorer
    train_s: float
    info: dict = field(default_factory=dict)


# -- MostPop --------------------------------------------------------------------------------------
def popularity(histories: Sequence[Sequence[str]], item_ids: Sequence[str]) -> np.ndarray:
    """Interaction count of each catalogue item in ``histories`` (items outside the catalogue are ignored)."""
    column = column_index(item_ids)
    cols = [column[i] for h in histories for i in h if i in column]
    return np.bincount(np.asarray(cols, dtype=np.int64), minlength=len(item_ids)).astype(np.float64)


def fit_most_popular(sequences: pd.DataFrame, item_ids: Sequence[str]) -> Fitted:
    """MostPop on training popularity, as the evaluate stage computes it (``items.train_count``)."""
    started = time.perf_counter()
    counts = popularity(train_histories(sequences), item_ids)
    return Fitted(most_popular_scorer(counts), time.perf_counter() - started)


# -- EASE (Steck 2019): the nightly baseline of pipelines.evaluate.baselines ------------------------------
def fit_ease(sequences: pd.DataFrame, item_ids: Sequence[str], lambdas: Sequence[float] = EASE_LAMBDAS,
             k: int = 10) -> Fitted:
    """Chooses lambda on the validation targets, then refits on training + validation items."""
    started = time.perf_counter()
    scorer, best, curve = nightly_ease(sequences, item_ids, lambdas, k)
    return Fitted(scorer, time.perf_counter() - started, {"lambda": best, "valid_ndcg": curve})


# -- SASRec with full cross-entropy (Kang & McAuley 2018; CE as in Klenitskiy & Vasilev 2023) ----
@dataclass(frozen=True)
class SASRecConfig:
    max_len: int = 200
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    lr: float = 1e-3
    batch_size: int = 128
    eval_every: int = 1          # epochs between validations
    patience: int = 10_000       # validations without a gain before stopping: by default the budget decides
    max_epochs: int = 10_000
    seed: int = 42


class CausalBlock(nn.Module):
    """Pre-norm self-attention + point-wise feed-forward, each with a residual connection."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.attn_norm = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ffn_norm = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                                  dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.out(attended.transpose(1, 2).reshape(batch, length, hidden)))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class SASRec(nn.Module):
    """Causal transformer over left-padded item rows (0 = padding, item column c is row c + 1).

    Positions count from the right end, so the newest item always sits at position max_len - 1,
    in training and at inference alike, however long the history and however wide the batch.
    """

    def __init__(self, n_items: int, config: SASRecConfig) -> None:
        super().__init__()
        self.config = config
        self.items = nn.Embedding(n_items + 1, config.hidden, padding_idx=0)
        self.positions = nn.Embedding(config.max_len, config.hidden)
        self.input_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(CausalBlock(config.hidden, config.heads, config.dropout)
                                    for _ in range(config.blocks))
        self.final_norm = nn.LayerNorm(config.hidden)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Hidden state at every position of ``rows`` (batch x width, width <= max_len)."""
        width = rows.shape[1]
        real = rows > 0
        positions = torch.arange(self.config.max_len - width, self.config.max_len, device=rows.device)
        x = self.items(rows) * math.sqrt(self.config.hidden) + self.positions(positions)
        x = self.input_drop(x) * real.unsqueeze(-1)
        # Causal, real keys only; the diagonal stays open so a padding query has a key (no NaN).
        allowed = torch.tril(torch.ones(width, width, dtype=torch.bool, device=rows.device)) & real[:, None, :]
        allowed = (allowed | torch.eye(width, dtype=torch.bool, device=rows.device)).unsqueeze(1)
        for block in self.blocks:
            x = block(x, allowed) * real.unsqueeze(-1)
        return self.final_norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every catalogue item (shared input/output embeddings, padding row left out)."""
        return hidden @ self.items.weight[1:].T


def left_padded(histories: Sequence[Sequence[str]], column: dict[str, int], width: int) -> torch.Tensor:
    """Each history's last ``width`` known items as 1-based rows, left-padded with 0."""
    out = torch.zeros(len(histories), width, dtype=torch.long)
    for u, history in enumerate(histories):
        rows = [column[i] + 1 for i in history if i in column][-width:]
        if rows:
            out[u, width - len(rows):] = torch.tensor(rows)
    return out


def sasrec_scorer(model: SASRec, column: dict[str, int], chunk: int = 256) -> Scorer:
    """Scores from the hidden state after each history's newest item.

    Histories are run in chunks of similar length, each cut to its longest history: cheaper than
    running every history at max_len (attention is quadratic in the width).
    """
    def score(histories: list[list[str]]) -> torch.Tensor:
        model.eval()
        rows = left_padded(histories, column, model.config.max_len)
        lengths = (rows > 0).sum(1)
        scores = torch.empty(len(histories), len(column))
        for part in torch.split(torch.argsort(lengths), chunk):
            width = max(int(lengths[part].max()), 1)
            scores[part] = model.logits(model(rows[part, -width:])[:, -1])
        return scores

    return score


def sasrec_batch_loss(model: SASRec, batch: torch.Tensor) -> torch.Tensor:
    """Full-softmax CE of next-item prediction at every real position of a batch of rows.

    ``batch`` rows are max_len + 1 wide: inputs are [:, :-1], targets [:, 1:]. Only positions whose
    input is a real item count (the padding before a user's first item predicts nothing).
    """
    width = max(int((batch > 0).sum(1).max()), 2)
    batch = batch[:, -width:]
    inputs, targets = batch[:, :-1], batch[:, 1:]
    mask = inputs > 0
    hidden = model(inputs)[mask]
    return F.cross_entropy(model.logits(hidden), targets[mask] - 1)


def length_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator,
                   jitter: float = 0.3) -> list[torch.Tensor]:
    """Batches of example indices with similar lengths, in random order.

    A batch costs as much as its longest row, so grouping by length cuts the padding and the
    quadratic attention over it. The sort key is the log
    length plus uniform noise of +-``jitter``, so batch compositions still change every epoch.
    """
    noise = (torch.rand(len(lengths), generator=generator) * 2 - 1) * jitter
    order = torch.argsort(torch.log(lengths.clamp(min=1).double()) + noise)
    batches = list(torch.split(order, batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


ProgressFn = Callable[[str], None]


def train_sasrec(sequences: pd.DataFrame, item_ids: Sequence[str], config: SASRecConfig,
                 budget_s: float, k: int = 10, progress: ProgressFn = log.info) -> Fitted:
    """Trains on every user's training items, selects the epoch by validation NDCG@k.

    Stops at the first of: ``budget_s`` seconds of wall clock (validation included),
    ``patience`` validations without a gain, ``max_epochs``. The best validated weights are kept.
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    column = column_index(item_ids)
    examples = left_padded([h for h in train_histories(sequences) if len(h) >= 2], column, config.max_len + 1)
    if not len(examples):
        raise ValueError("no user has two or more training items: SASRec has nothing to learn from")
    lengths = (examples > 0).sum(1)
    valid = validation_set(sequences)
    model = SASRec(len(item_ids), config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98))
    scorer = sasrec_scorer(model, column)
    started = time.perf_counter()
    best = {"ndcg": -1.0, "epoch": 0, "state": copy.deepcopy(model.state_dict())}
    stale, stopped_by, epoch = 0, "max_epochs", 0

    def out_of_time() -> bool:
        return time.perf_counter() - started > budget_s

    for epoch in range(1, config.max_epochs + 1):
        model.train()
        losses = []
        for batch in length_batches(lengths, config.batch_size, generator):
            loss = sasrec_batch_loss(model, examples[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if out_of_time():
                break
        if epoch % config.eval_every and not out_of_time():
            continue
        ndcg = evaluate_scorer(scorer, valid, list(item_ids), k)[0][f"ndcg@{k}"]
        if ndcg > best["ndcg"]:
            best, stale = {"ndcg": ndcg, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}, 0
        else:
            stale += 1
        progress(f"SASRec (dropout {config.dropout}) epoch {epoch}: loss {np.mean(losses):.4f}, "
                 f"validation NDCG@{k} {ndcg:.4f} (best {best['ndcg']:.4f} at epoch {best['epoch']}), "
                 f"elapsed {time.perf_counter() - started:.0f}s")
        if out_of_time():
            stopped_by = "budget"
            break
        if stale >= config.patience:
            stopped_by = "early stopping"
            break
    model.load_state_dict(best["state"])
    model.eval()
    return Fitted(scorer, time.perf_counter() - started,
                  {"dropout": config.dropout, "best_epoch": best["epoch"], "epochs": epoch,
                   "valid_ndcg": best["ndcg"], "stopped_by": stopped_by})


def fit_sasrec(sequences: pd.DataFrame, item_ids: Sequence[str], budget_s: float,
               dropouts: Sequence[float] = (0.2,), k: int = 10, progress: ProgressFn = log.info,
               **config: object) -> Fitted:
    """One SASRec per dropout rate, the budget split evenly; the best on validation wins.

    ``train_s`` is the time spent on all of them, since that is what the choice cost.
    """
    fits = [train_sasrec(sequences, item_ids, SASRecConfig(dropout=float(p), **config),
                         budget_s / len(dropouts), k, progress) for p in dropouts]
    best = max(fits, key=lambda fit: fit.info["valid_ndcg"])
    best.train_s = sum(fit.train_s for fit in fits)
    return best
