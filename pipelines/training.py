"""The training loop: next-item prediction with a full softmax over the catalogue.

Every position of a user's training sequence predicts the next item (SASRec-style). Gradients
reach the LoRA adapters through the text vectors of a sample of the batch's target items; the
other items use cached text vectors, refreshed every ``text_refresh_steps`` steps.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.evaluation import EvalSet, evaluate_scorer, model_scorer
from pipelines.model import Catalogue, SequenceRecommender

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    curve: list[dict[str, float]] = field(default_factory=list)
    best_valid_ndcg: float = 0.0
    best_epoch: int = 0
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    stopped_by: str = "epochs"


def seed_everything(seed: int) -> None:
    """Seeds every generator and asks for deterministic kernels: without that, parallel CPU
    reductions (embedding gradients) vary run to run and a rerun of a night gives other weights."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def training_examples(histories: list[list[str]], catalogue: Catalogue, max_len: int) -> torch.Tensor:
    """Left-padded rows of length max_len + 1: inputs are [:, :-1], next-item targets [:, 1:]."""
    usable = [h for h in histories if len(h) >= 2]
    return catalogue.rows_for(usable, max_len + 1)


def _text_sample(targets: torch.Tensor, limit: int, generator: torch.Generator) -> torch.Tensor:
    rows = torch.unique(targets[targets > 0])
    if len(rows) > limit:
        rows = rows[torch.randperm(len(rows), generator=generator)[:limit]]
    return rows


def train_step(model: SequenceRecommender, catalogue: Catalogue, batch: torch.Tensor, cached_text: torch.Tensor,
               text_items: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss of one batch; returns (loss, sampled rows, their fresh text vectors)."""
    inputs, targets = batch[:, :-1], batch[:, 1:]
    sampled = _text_sample(targets, text_items, generator)
    fresh = catalogue.text_vectors(sampled)
    text = cached_text.index_copy(0, sampled - 1, fresh)
    table = catalogue.item_table(text)
    hidden = model.encode_sequences(table, inputs)
    logits = hidden @ table[1:].T  # (B, L, N): column c is catalogue row c + 1
    mask = targets > 0
    loss = F.cross_entropy(logits[mask], targets[mask] - 1)
    return loss, sampled, fresh.detach()


def validate(model: SequenceRecommender, catalogue: Catalogue, valid: EvalSet, k: int) -> float:
    metrics, _ = evaluate_scorer(model_scorer(model, catalogue), valid, catalogue.item_ids, k)
    model.train()
    return metrics[f"ndcg@{k}"]


class Progress:
    """Plain log lines (they read well in Airflow logs) with loss, throughput and ETA."""

    def __init__(self, total_steps: int, every_seconds: float = 10.0) -> None:
        self.total, self.every, self.started, self.last = total_steps, every_seconds, time.monotonic(), 0.0

    def update(self, step: int, epoch: int, loss: float, samples: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.started
        eta = elapsed / max(step, 1) * max(self.total - step, 0)
        log.info("step %d/%d epoch %d loss %.4f | %.1f samples/s | elapsed %.0fs eta %.0fs",
                 step, self.total, epoch, loss, samples / max(elapsed, 1e-9), elapsed, eta)


def train(model: SequenceRecommender, catalogue: Catalogue, train_histories: list[list[str]], valid: EvalSet,
          params: dict[str, Any], k: int = 10) -> TrainResult:
    """Trains in place, keeps the weights of the best validation epoch, and returns the curve."""
    seed_everything(int(params["seed"]))
    generator = torch.Generator().manual_seed(int(params["seed"]))
    examples = training_examples(train_histories, catalogue, model.config.max_seq_len)
    if len(examples) == 0:
        raise ValueError("no user has two or more training interactions: nothing to train on")
    batch_size, epochs = int(params["batch_size"]), int(params["epochs"])
    steps_per_epoch = math.ceil(len(examples) / batch_size)
    max_steps = int(params.get("max_steps") or 0) or steps_per_epoch * epochs
    budget_s = float(params.get("budget_minutes") or 0) * 60 or math.inf
    lm_params = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("text.")]
    head_params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("text.")]
    optimizer = torch.optim.AdamW([
        {"params": head_params, "lr": float(params["learning_rate"])},
        {"params": lm_params, "lr": float(params["lm_learning_rate"])},
    ], weight_decay=float(params["weight_decay"]))
    result, progress = TrainResult(), Progress(max_steps)
    best_state, started = copy.deepcopy(model.state_dict()), time.monotonic()
    with torch.no_grad():
        cached_text = catalogue.text_vectors()
    model.train()
    log.info("training on %d sequences, %d items, %d steps max", len(examples), len(catalogue), max_steps)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(examples), generator=generator)
        losses = []
        for start in range(0, len(examples), batch_size):
            batch = examples[order[start:start + batch_size]]
            loss, sampled, fresh = train_step(model, catalogue, batch, cached_text,
                                              int(params["text_items_per_step"]), generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            cached_text[sampled - 1] = fresh
            result.steps += 1
            result.samples += len(batch)
            losses.append(loss.item())
            if result.steps % int(params["text_refresh_steps"]) == 0:
                with torch.no_grad():
                    cached_text = catalogue.text_vectors()
            progress.update(result.steps, epoch, losses[-1], result.samples)
            if result.steps >= max_steps or time.monotonic() - started > budget_s:
                break
        ndcg = validate(model, catalogue, valid, k)
        result.curve.append({"step": result.steps, "epoch": epoch, "loss": float(np.mean(losses)),
                             "valid_ndcg": ndcg, "seconds": round(time.monotonic() - started, 2)})
        progress.update(result.steps, epoch, float(np.mean(losses)), result.samples, force=True)
        log.info("epoch %d: mean loss %.4f, validation NDCG@%d %.4f", epoch, np.mean(losses), k, ndcg)
        if ndcg > result.best_valid_ndcg or epoch == 1:
            result.best_valid_ndcg, result.best_epoch = ndcg, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - result.best_epoch >= int(params.get("patience", 3)):
            result.stopped_by = "early stopping"
            break
        if result.steps >= max_steps:
            result.stopped_by = "max_steps"
            break
        if time.monotonic() - started > budget_s:
            result.stopped_by = "budget"
            break
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.monotonic() - started
    return result
