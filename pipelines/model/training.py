"""The training loop: next-item prediction with a full softmax over the catalogue.

Every position of a user's training sequence predicts the next item (SASRec-style), with a full
softmax over the catalogue computed a chunk of positions at a time on the CPU. Gradients
reach the LoRA adapters through the text vectors of a sample of the batch's target items; the
other items use cached text vectors, refreshed at each epoch's end (and every
``text_refresh_steps`` steps if set). Batches are shuffled rows cut to their longest row; batching
by length would skip more padding, but it scored lower on ML-100K validation. The learning rates
warm up, then decay linearly (or by a cosine) to 5% at the run's planned end: the epochs' steps, or
fewer when the wall-clock budget will end the run first.

The run serves its best validation epoch's weights, or the mean of its ``average_best_epochs`` best
epochs' weights where that mean scores higher on validation: the epochs of one run lie in one basin,
and their mean is a flatter, steadier point than any single epoch, whose validation figure jumps
from epoch to epoch. A warm night's starting weights (the champion's, epoch 0) count among them.

The loop runs on CUDA (bf16 autocast, TF32) when there is a GPU and on the CPU (float32,
deterministic kernels) otherwise; under ``torchrun`` every process trains on its share of each
epoch with DistributedDataParallel. It checkpoints every ``checkpoint_every_steps`` steps and
resumes from the last checkpoint after a crash.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pipelines.core.io import NonRetryableError
from pipelines.model.checkpoint import load_checkpoint, restore_optimizer, save_checkpoint, trainable_state
from pipelines.ranking.scoring import EvalSet, evaluate_scorer, model_scorer
from pipelines.model.recommender import Catalogue, SequenceRecommender

if TYPE_CHECKING:
    from pipelines.config import FinetuneParams

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    curve: list[dict[str, float]] = field(default_factory=list)
    best_valid_ndcg: float = 0.0  # of the weights served: the best epoch's, or the chosen mean's
    best_epoch: int = 0
    averaged_epochs: list[int] = field(default_factory=list)  # the epochs whose mean is served; [] none
    averaging: dict[str, float] = field(default_factory=dict)  # validation NDCG: "best epoch", "mean"; {} off
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    stopped_by: str = "epochs"
    resumed_at_step: int = 0
    trained_on: str = "cpu"  # the torch device, as text
    world_size: int = 1


@dataclass(frozen=True)
class Runtime:
    """Where this process trains, and its place among the processes of a distributed run."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def autocast(self) -> torch.autocast:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")


def seed_everything(seed: int) -> None:
    """Seeds every generator and asks for deterministic kernels: without that, parallel CPU
    reductions (embedding gradients) vary run to run and a rerun of a night gives other weights."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if not torch.cuda.is_available():
        torch.use_deterministic_algorithms(True)


def setup_runtime(requested: str = "auto") -> Runtime:
    """The device (``auto``: CUDA if present, else CPU) and, under torchrun, the process group.

    Raises:
        NonRetryableError: ``cuda`` was asked for where torch sees no CUDA device.
    """
    if requested == "cuda" and not torch.cuda.is_available():
        raise NonRetryableError(
            f"finetune.device is 'cuda' but torch {torch.__version__} sees no CUDA device here "
            f"({'a CPU-only build' if torch.version.cuda is None else 'CUDA ' + torch.version.cuda + ', no usable GPU'}); "
            "set finetune.device to auto or cpu, or run finetune on a GPU worker (queue gpu)")
    use_cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return Runtime(torch.device("cuda", local_rank), rank, world_size)
    return Runtime(torch.device("cpu"), rank, world_size)


def training_examples(histories: list[list[str]], catalogue: Catalogue, max_len: int) -> torch.Tensor:
    """Right-padded rows of length max_len + 1: inputs are [:, :-1], next-item targets [:, 1:].

    A history longer than a row is cut into windows from its end, overlapping by one item, so
    every transition is trained on, not only the latest ``max_len``.
    """
    windows = []
    for history in histories:
        end = len(history)
        while end >= 2:
            windows.append(history[max(0, end - max_len - 1):end])
            end -= max_len
    return catalogue.rows_for(windows, max_len + 1)


def trim_padding(batch: torch.Tensor) -> torch.Tensor:
    """The batch without its all-padding trailing columns (rows are right-padded)."""
    return batch[:, :max(int((batch > 0).sum(1).max()), 2)]


def next_item_pairs(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-item targets of right-padded training rows.

    A window shorter than its row ends in an item with no next item: it leaves the inputs, so the
    last real input is always one that predicts, with the last position as at inference. Right
    padding and causal attention leave every earlier position unchanged.
    """
    targets = batch[:, 1:]
    return batch[:, :-1] * (targets > 0), targets


def _text_sample(targets: torch.Tensor, limit: int, generator: torch.Generator) -> torch.Tensor:
    rows = torch.unique(targets[targets > 0])
    if len(rows) > limit:
        rows = rows[torch.randperm(len(rows), generator=generator)[:limit].to(rows.device)]
    return rows


class ChunkedSoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ table.T`` against ``targets``, a chunk of rows at a time.

    On the CPU the full logits matrix (positions x catalogue, tens of MB) is memory-bound: its
    log-softmax and backward cost about a quarter of a step. Chunks stay in cache, and the backward
    recomputes each chunk's logits instead of storing them, so the logits are never held whole.
    On ML-1M-sized data (3,416 items, two threads) the loss runs 1.25x faster (``bench/train_speed.py``);
    on a small catalogue with one thread the recomputation can cost more than it saves. Exactly the
    gradient of ``F.cross_entropy``.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, table: torch.Tensor, targets: torch.Tensor,
                chunk: int) -> torch.Tensor:
        losses = []
        for start in range(0, len(hidden), chunk):
            logits = hidden[start:start + chunk] @ table.T
            picked = logits.gather(1, targets[start:start + chunk, None]).squeeze(1)
            losses.append(torch.logsumexp(logits, 1) - picked)
        ctx.save_for_backward(hidden, table, targets)
        ctx.chunk = chunk
        return torch.cat(losses).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        hidden, table, targets = ctx.saved_tensors
        grad_hidden, grad_table = torch.empty_like(hidden), torch.zeros_like(table)
        scale = grad / len(hidden)
        for start in range(0, len(hidden), ctx.chunk):
            part = hidden[start:start + ctx.chunk]
            probabilities = torch.softmax(part @ table.T, 1)  # d(loss)/d(logits) = softmax - one-hot
            probabilities[torch.arange(len(part)), targets[start:start + ctx.chunk]] -= 1.0
            probabilities *= scale
            grad_hidden[start:start + ctx.chunk] = probabilities @ table
            grad_table.addmm_(probabilities.T, part)
        return grad_hidden, grad_table, None, None


CE_CHUNK_ROWS = 256  # 256 x a few thousand items: a chunk of logits fits in the CPU's cache


def catalogue_cross_entropy(hidden: torch.Tensor, table: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each hidden state's next item over the whole catalogue (``table``).

    Chunked on the CPU; on a GPU one fused kernel (in float32 under bf16 autocast) is faster."""
    if hidden.device.type == "cpu" and not torch.is_autocast_enabled("cpu"):
        return ChunkedSoftmaxCrossEntropy.apply(hidden, table, targets, CE_CHUNK_ROWS)
    return F.cross_entropy((hidden @ table.T).float(), targets)


class NextItemObjective(nn.Module):
    """The training forward pass as a module, so DistributedDataParallel can wrap it."""

    def __init__(self, model: SequenceRecommender, catalogue: Catalogue) -> None:
        super().__init__()
        self.model = model
        self.catalogue = catalogue

    def forward(self, batch: torch.Tensor, cached_text: torch.Tensor, sampled: torch.Tensor,
                id_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the next item at every real position; returns (loss, fresh text).
        ``id_rows`` is the catalogue's ID rows with the step's dropped items set to 0 (text alone)."""
        inputs, targets = next_item_pairs(batch)
        fresh = self.catalogue.text_vectors(sampled)
        text = cached_text.index_copy(0, sampled - 1, fresh.to(cached_text.dtype))
        table = self.catalogue.item_table(text, id_rows)
        hidden = self.model.encode_sequences(table, inputs)
        mask = inputs > 0  # a position predicts only from a real item, and only a real next item
        loss = catalogue_cross_entropy(hidden[mask], table[1:], targets[mask] - 1)  # column c is row c + 1
        return loss, fresh.detach()


LR_SCHEDULES = ("constant", "linear", "cosine")


def lr_factor(step: int, planned_steps: int, warmup_steps: int, schedule: str, floor: float = 0.05) -> float:
    """Multiplier of the base learning rates at ``step``: a linear warm-up, then a decay to
    ``floor`` at ``planned_steps``. Under a fixed budget, ending on a small learning rate is
    worth more than steps at a constant one (Li et al. 2020, "Budgeted Training").

    The warm-up takes at most a tenth of the planned steps, so a short run still trains at its
    full rate."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"finetune.lr_schedule={schedule!r} is not one of {', '.join(LR_SCHEDULES)}")
    warmup_steps = min(warmup_steps, planned_steps // 10)
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or planned_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (planned_steps - warmup_steps))
    decay = 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return floor + (1.0 - floor) * decay


def validate(model: SequenceRecommender, catalogue: Catalogue, valid: EvalSet, k: int,
             text_vectors: torch.Tensor | None = None) -> float:
    metrics, _ = evaluate_scorer(model_scorer(model, catalogue, text_vectors), valid, catalogue.item_ids, k)
    model.train()
    return metrics[f"ndcg@{k}"]


class Progress:
    """A progress bar on a terminal; plain log lines (they read well in Airflow) elsewhere."""

    def __init__(self, total_steps: int, done: int, every_seconds: float = 10.0, enabled: bool = True,
                 budget_s: float = math.inf, elapsed_s: float = 0.0) -> None:
        self.total, self.every, self.enabled = total_steps, every_seconds, enabled
        self.budget_left = budget_s - elapsed_s
        self.started, self.last, self.start_step = time.monotonic(), 0.0, done
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=done, unit="step", dynamic_ncols=True)

    def update(self, step: int, epoch: int, loss: float, samples: int, force: bool = False) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        rate = samples / max(elapsed, 1e-9)
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}", samples_s=f"{rate:.0f}", refresh=True)
            return
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        eta = min(elapsed / max(step - self.start_step, 1) * max(self.total - step, 0),
                  max(self.budget_left - elapsed, 0.0))
        log.info("step %d/%d epoch %d loss %.4f | %.1f samples/s | elapsed %.0fs eta %.0fs",
                 step, self.total, epoch, loss, rate, elapsed, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class LoopState:
    """The loop's counters; saved in every checkpoint."""

    epoch: int = 1
    batch_in_epoch: int = 0
    steps: int = 0
    samples: int = 0
    elapsed_s: float = 0.0
    epoch_losses: list[float] = field(default_factory=list)
    curve: list[dict[str, float]] = field(default_factory=list)
    best_valid_ndcg: float = 0.0
    best_epoch: int = 0  # 0 with start_validated: the weights the run started from
    start_validated: bool = False
    top: list[list[float]] = field(default_factory=list)  # [validation NDCG, epoch] of the kept weights, best 1st
    planned_steps: int = 0  # the run's expected length, which the learning-rate schedule decays over
    stopped_by: str = ""  # set once the run has finished: a resumed finished run trains no further
    fingerprint: str = ""


class Trainer:
    """Trains a SequenceRecommender in place and leaves it with its best validation weights."""

    def __init__(self, model: SequenceRecommender, catalogue: Catalogue, params: FinetuneParams,
                 runtime: Runtime, checkpoint_dir: Path | None = None, fingerprint: str = "") -> None:
        self.model, self.catalogue, self.params, self.runtime = model, catalogue, params, runtime
        self.checkpoint_dir, self.fingerprint = checkpoint_dir, fingerprint
        # Before DDP wraps the model: it expects a gradient for every parameter that requires one.
        model.unknown_id.requires_grad_(params.id_dropout > 0)  # no item is dropped: nothing to learn it from
        self.objective: nn.Module = NextItemObjective(model, catalogue)
        if runtime.world_size > 1:
            self.objective = nn.parallel.DistributedDataParallel(
                self.objective, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
        lm = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("text.")]
        head = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("text.")]
        groups = [{"params": head, "lr": params.learning_rate}]
        if lm:  # none where the text tower is kept as it is (a warm night)
            groups.append({"params": lm, "lr": params.lm_learning_rate})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=params.weight_decay)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.generator = torch.Generator().manual_seed(params.seed)
        self.state = LoopState(fingerprint=fingerprint)
        self.best = trainable_state(model)
        self.top: list[dict[str, torch.Tensor]] = []  # the weights of state.top's epochs, in its order
        self.order = torch.empty(0, dtype=torch.long)
        self.cached_text = torch.empty(0)

    # -- checkpoints ------------------------------------------------------------------------
    def save(self) -> None:
        if self.checkpoint_dir is None or not self.runtime.is_main:
            return
        save_checkpoint(self.checkpoint_dir, model=self.model, best=self.best, optimizer=self.optimizer,
                        tensors={"order": self.order, "cached_text": self.cached_text.float(),
                                 "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state()},
                        state=asdict(self.state), top=self.top)

    def restore(self) -> bool:
        found = load_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        if found is None or found["state"].get("fingerprint") != self.fingerprint:
            return False
        self.model.load_state_dict(found["model"], strict=False)
        self.best = found["best"]
        self.top = found["top"]
        restore_optimizer(self.optimizer, found["optimizer"])
        tensors = found["tensors"]
        self.order = tensors["order"]
        self.cached_text = tensors["cached_text"].to(self.runtime.device)
        self.generator.set_state(tensors["generator"])
        torch.set_rng_state(tensors["torch_rng"])
        self.state = LoopState(**found["state"])
        log.info("resumed from the checkpoint at step %d (epoch %d, batch %d)", self.state.steps,
                 self.state.epoch, self.state.batch_in_epoch)
        return True

    # -- the loop ---------------------------------------------------------------------------
    def _shard(self, order: torch.Tensor) -> torch.Tensor:
        """This process's share of the epoch; every process gets the same number of examples."""
        per_rank = len(order) // self.runtime.world_size
        return order[self.runtime.rank * per_rank:(self.runtime.rank + 1) * per_rank]

    def _refresh_text(self) -> None:
        """Recomputes the cached text vectors of the whole catalogue, without dropout."""
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), self.runtime.autocast:
            self.cached_text = self.catalogue.text_vectors().float()
        self.model.train(was_training)

    def _set_learning_rates(self) -> None:
        factor = lr_factor(self.state.steps, self.state.planned_steps, self.params.warmup_steps,
                           self.params.lr_schedule)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def _plan(self, max_steps: int, budget_s: float) -> None:
        """The run's expected steps: ``max_steps``, or fewer when the wall-clock budget will end it
        first, estimated from the pace so far. Every process takes the main process's estimate,
        so their learning rates never differ."""
        state, planned = self.state, max_steps
        if math.isfinite(budget_s) and state.steps:
            pace = state.elapsed_s / state.steps  # validation included: it recurs every epoch
            planned = min(max_steps, state.steps + int(max(budget_s - state.elapsed_s, 0.0) / pace))
        if self.runtime.world_size > 1:
            shared = torch.tensor([planned], dtype=torch.long, device=self.runtime.device)
            dist.broadcast(shared, src=0)
            planned = int(shared.item())
        state.planned_steps = planned

    def _id_rows(self) -> torch.Tensor:
        """The catalogue's ID rows, each dropped (0: no ID vector) with probability ``id_dropout``."""
        rows = self.catalogue.id_rows
        if not self.params.id_dropout:
            return rows
        dropped = torch.rand(len(rows), generator=self.generator) < self.params.id_dropout
        return rows.masked_fill(dropped.to(rows.device), 0)

    def _step(self, batch: torch.Tensor, accumulate: int, micro: int) -> float:
        sampled = _text_sample(batch[:, 1:], self.params.text_items_per_step, self.generator)
        id_rows = self._id_rows()
        with self.runtime.autocast:
            loss, fresh = self.objective(batch, self.cached_text, sampled, id_rows)
        (loss / accumulate).backward()
        self.cached_text[sampled - 1] = fresh.float()
        if (micro + 1) % accumulate == 0:
            self._set_learning_rates()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def fit(self, examples: torch.Tensor, valid: EvalSet, k: int = 10, keep_start: bool = False) -> TrainResult:
        """Trains; with ``keep_start`` the starting weights are validated first and kept unless an
        epoch beats them (a warm night never leaves the champion worse on validation)."""
        resumed = self.restore()
        if not resumed:
            self._refresh_text()
            if keep_start:
                self._validate_start(valid, k)
        params, runtime, state = self.params, self.runtime, self.state
        batch_size, epochs = params.batch_size, params.epochs
        accumulate = params.grad_accumulation_steps
        micro_per_epoch = math.ceil(len(examples) // runtime.world_size / batch_size)  # as _shard splits
        max_steps = params.max_steps or micro_per_epoch * epochs
        budget_s = params.budget_minutes * 60 or math.inf
        every = params.checkpoint_every_steps
        refresh_every = params.text_refresh_steps  # 0: only at each epoch's end
        progress = Progress(max_steps, state.steps, enabled=runtime.is_main, budget_s=budget_s,
                            elapsed_s=state.elapsed_s)
        started = time.monotonic() - state.elapsed_s
        result = TrainResult(resumed_at_step=state.steps if resumed else 0, trained_on=str(runtime.device),
                             world_size=runtime.world_size)
        self.model.train()
        if not state.planned_steps:
            self._plan(max_steps, budget_s)
        while state.epoch <= epochs and not state.stopped_by:
            if state.batch_in_epoch == 0:
                self.order = self._shard(torch.randperm(len(examples), generator=self.generator))
                state.epoch_losses = []
            for micro in range(state.batch_in_epoch, micro_per_epoch):
                batch = trim_padding(examples[self.order[micro * batch_size:(micro + 1) * batch_size]])
                batch = batch.to(runtime.device)
                state.epoch_losses.append(self._step(batch, accumulate, micro))
                state.steps += 1
                state.samples += len(batch) * runtime.world_size
                state.batch_in_epoch = micro + 1
                state.elapsed_s = time.monotonic() - started
                if refresh_every and state.steps % refresh_every == 0:
                    self._refresh_text()
                progress.update(state.steps, state.epoch, state.epoch_losses[-1], state.samples)
                if every and state.steps % every == 0:
                    self.save()
                if state.steps >= max_steps or state.elapsed_s > budget_s:
                    break
            self._end_epoch(valid, k, max_steps, budget_s, started, epochs)
            progress.update(state.steps, state.epoch - 1, state.curve[-1]["loss"], state.samples, force=True)
        progress.close()
        self.model.load_state_dict(self.best, strict=False)
        result.curve, result.best_valid_ndcg, result.best_epoch = state.curve, state.best_valid_ndcg, state.best_epoch
        self._serve_best_mean(valid, k, result)
        self.model.eval()
        result.steps, result.samples = state.steps, state.samples
        result.seconds, result.stopped_by = time.monotonic() - started, state.stopped_by or "epochs"
        return result

    # -- weight averaging ---------------------------------------------------------------------
    def _keep_if_among_best(self, ndcg: float, epoch: int) -> None:
        """Keeps the epoch's weights while they are among the ``average_best_epochs`` best (CPU copies)."""
        limit = self.params.average_best_epochs
        if limit < 2 or (len(self.state.top) == limit and ndcg <= self.state.top[-1][0]):
            return  # off, or not among the best: no copy is made
        entries = [*zip(self.state.top, self.top), ([ndcg, epoch], trainable_state(self.model))]
        entries.sort(key=lambda entry: -entry[0][0])  # stable: an earlier epoch stays ahead of an equal later one
        self.state.top = [list(record) for record, _ in entries[:limit]]
        self.top = [weights for _, weights in entries[:limit]]

    def _serve_best_mean(self, valid: EvalSet, k: int, result: TrainResult) -> None:
        """Validates the mean of the kept epochs' weights and leaves the model with it where it beats
        the best epoch (which the model holds on entry), else with the best epoch; records both."""
        if len(self.top) < 2:
            return
        epochs, best_ndcg = [int(epoch) for _, epoch in self.state.top], self.state.best_valid_ndcg
        mean = mean_weights(self.top)
        self.model.load_state_dict(mean, strict=False)
        if self.params.lm_learning_rate > 0:  # else every kept text tower is the same: its vectors stand
            self._refresh_text()
        with self.runtime.autocast:
            ndcg = validate(self.model, self.catalogue, valid, k, self.cached_text)
        result.averaging = {"best epoch": best_ndcg, "mean": ndcg}
        if ndcg > best_ndcg:
            log.info("weight averaging: serving the mean of epochs %s: validation NDCG@%d %.4f against %.4f for "
                     "epoch %d alone", epochs, k, ndcg, best_ndcg, self.state.best_epoch)
            result.best_valid_ndcg, result.averaged_epochs = ndcg, epochs
        else:
            log.info("weight averaging: the mean of epochs %s scores %.4f on validation, not above epoch %d's %.4f: "
                     "serving epoch %d", epochs, ndcg, self.state.best_epoch, best_ndcg, self.state.best_epoch)
            self.model.load_state_dict(self.best, strict=False)

    def _validate_start(self, valid: EvalSet, k: int) -> None:
        """Epoch 0 of the curve: the starting weights, the best so far."""
        state = self.state
        with self.runtime.autocast:
            ndcg = validate(self.model, self.catalogue, valid, k, self.cached_text)
        state.curve.append({"step": 0, "epoch": 0, "loss": float("nan"), "valid_ndcg": ndcg, "seconds": 0.0})
        state.best_valid_ndcg, state.best_epoch, state.start_validated = ndcg, 0, True
        self._keep_if_among_best(ndcg, 0)
        if self.runtime.is_main:
            log.info("epoch 0 (the starting weights): validation NDCG@%d %.4f", k, ndcg)

    def _end_epoch(self, valid: EvalSet, k: int, max_steps: int, budget_s: float, started: float,
                   epochs: int) -> None:
        """Validation, early stopping and the epoch's checkpoint (which records a stop)."""
        state = self.state
        if any(p.grad is not None for group in self.optimizer.param_groups for p in group["params"]):
            self.optimizer.step()  # a partial accumulation at the epoch's end still counts
            self.optimizer.zero_grad(set_to_none=True)
        self._refresh_text()  # the epoch's text vectors serve validation and the next steps alike
        with self.runtime.autocast:
            ndcg = validate(self.model, self.catalogue, valid, k, self.cached_text)
        loss = float(np.mean(state.epoch_losses)) if state.epoch_losses else float("nan")
        state.curve.append({"step": state.steps, "epoch": state.epoch, "loss": loss, "valid_ndcg": ndcg,
                            "seconds": round(time.monotonic() - started, 2)})
        if self.runtime.is_main:
            log.info("epoch %d: mean loss %.4f, validation NDCG@%d %.4f", state.epoch, loss, k, ndcg)
        if ndcg > state.best_valid_ndcg or (state.best_epoch == 0 and not state.start_validated):
            state.best_valid_ndcg, state.best_epoch = ndcg, state.epoch
            self.best = trainable_state(self.model)
        self._keep_if_among_best(ndcg, state.epoch)
        state.elapsed_s = time.monotonic() - started
        if state.epoch - state.best_epoch >= self.params.patience:
            state.stopped_by = "early stopping"
        elif state.epoch >= epochs:
            state.stopped_by = "epochs"
        elif state.steps >= max_steps:
            state.stopped_by = "max_steps"
        elif state.elapsed_s > budget_s:
            state.stopped_by = "budget"
        state.epoch += 1
        state.batch_in_epoch = 0
        self._plan(max_steps, budget_s)
        self.save()


def mean_weights(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors (computed in float64, stored in each tensor's
    dtype); other tensors are taken from the first state."""
    return {name: (torch.stack([s[name].double() for s in states]).mean(0).to(value.dtype)
                   if value.is_floating_point() else value)
            for name, value in states[0].items()}


def train(model: SequenceRecommender, catalogue: Catalogue, train_histories: list[list[str]], valid: EvalSet,
          params: FinetuneParams, k: int = 10, runtime: Runtime | None = None,
          checkpoint_dir: Path | None = None, fingerprint: str = "", keep_start: bool = False) -> TrainResult:
    """Trains in place, keeps the weights of the best validation epoch (with ``keep_start``, the
    starting weights count as epoch 0), or the mean of the best epochs' weights where that validates
    higher, and returns the curve."""
    seed_everything(params.seed)
    runtime = runtime or Runtime(torch.device("cpu"))
    examples = training_examples(train_histories, catalogue, model.config.max_seq_len)
    if len(examples) == 0:
        raise ValueError("no user has two or more training interactions: nothing to train on")
    if runtime.is_main:
        log.info("training on %d sequences, %d items, device %s, %d process(es)", len(examples), len(catalogue),
                 runtime.device, runtime.world_size)
    trainer = Trainer(model, catalogue, params, runtime, checkpoint_dir, fingerprint)
    return trainer.fit(examples, valid, k, keep_start)
