"""The optional second stage: a BERT pair classifier re-orders the first stage's top candidates.

The classifier reads (user profile, candidate item) pairs: the profile is the texts of the
user's most recent items, newest first; the base model is loaded with
``AutoModelForSequenceClassification`` (one logit) and adapted with LoRA on its top layer(s).
It is trained with binary cross-entropy on the next item at the last few positions of each
user's *training* sequence (positives) and on hard negatives drawn from the first stage's top
candidates for the same prefix. As in ``pipelines.model``, the hidden states entering the first
adapted layer do not depend on the adapters: they are computed once per training and validation
pair, and each epoch runs only the adapted layers, the pooler and the classifier.

``reranking_scorer`` wraps a first-stage scorer with the same contract as the scorers of
``pipelines.evaluation``: the first stage's ``top_n`` unseen items get the re-ranker's scores,
shifted above every other item's score, so the metric code needs no change.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.evaluation import EvalSet, Scorer, rank_eval_set, validation_set
from pipelines.metrics import ranking_metrics
from pipelines.model import _canonical_adapter_config, chunks_by_length, resolve_base_model, run_encoder_layers
from pipelines.training import Progress, Runtime, seed_everything

log = logging.getLogger(__name__)

RERANKER_DIR = "reranker"  # inside a model directory (models/candidate/reranker/)
CONFIG_FILE = "reranker_config.json"
PROFILE_SEPARATOR = "; "

# Training settings of ``finetune.reranker`` (the artifact's own settings are RerankerConfig's).
TRAINING_DEFAULTS: dict[str, Any] = {
    "negatives": 3, "positions_per_user": 2, "fusion_weights": [0.0], "batch_size": 32,
    "learning_rate": 5e-4, "weight_decay": 0.0, "epochs": 5, "patience": 2, "budget_minutes": 0, "seed": 42,
}


@dataclass
class RerankerConfig:
    """What scoring needs; saved as JSON next to the adapter."""

    base_model: str = "auto"
    top_n: int = 20
    profile_items: int = 3
    profile_item_chars: int = 32
    max_tokens: int = 48
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "value"])
    lora_layers: list[int] = field(default_factory=lambda: [5])
    fusion_weight: float = 0.0  # weight of the first stage's standardised score; chosen on validation

    @classmethod
    def from_params(cls, settings: Mapping[str, Any], base_model: str) -> RerankerConfig:
        known = {f for f in cls.__dataclass_fields__ if f not in ("base_model", "fusion_weight")}
        config = cls(base_model=base_model, **{k: v for k, v in settings.items() if k in known})
        for name in ("top_n", "profile_items", "profile_item_chars", "max_tokens", "lora_rank"):
            _require_positive_int(name, getattr(config, name))
        if not config.lora_layers:
            raise ValueError("finetune.reranker.lora_layers is empty: at least one layer needs adapters")
        return config


def _require_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"finetune.reranker.{name} must be an integer >= 1, got {value!r}")


def training_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``finetune.reranker`` merged over the defaults, checked; unknown keys are an error."""
    known = set(TRAINING_DEFAULTS) | set(RerankerConfig.__dataclass_fields__) - {"base_model", "fusion_weight"} | {"enabled"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"finetune.reranker: unknown keys {unknown}; known: {sorted(known)}")
    merged = {**TRAINING_DEFAULTS, **settings}
    for name in ("negatives", "positions_per_user", "batch_size", "epochs", "patience"):
        _require_positive_int(name, merged[name])
    weights = merged["fusion_weights"]
    if not isinstance(weights, list) or not weights or any(float(w) < 0 for w in weights):
        raise ValueError(f"finetune.reranker.fusion_weights must be a non-empty list of weights >= 0, got {weights!r}")
    return merged


# -- texts ----------------------------------------------------------------------------------------
def profile_text(history: Sequence[str], text_of: Mapping[str, str], n_items: int, item_chars: int) -> str:
    """The texts of the user's latest ``n_items`` known items, newest first, each cut to ``item_chars``."""
    known = [item for item in history if item in text_of][-n_items:]
    return PROFILE_SEPARATOR.join(text_of[item][:item_chars].strip() for item in reversed(known))


# -- the classifier -------------------------------------------------------------------------------
class PairReranker(nn.Module):
    """The base model as a one-logit sequence classifier with LoRA on its top layer(s)."""

    def __init__(self, config: RerankerConfig, adapter_dir: Path | None = None) -> None:
        super().__init__()
        from peft import LoraConfig, PeftModel, get_peft_model
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # a fresh classifier head is expected, not news
        hf_logging.disable_progress_bar()
        base_path = resolve_base_model(config.base_model)
        self.config = config
        # A saved re-ranker carries its tokenizer; a new one takes the base model's.
        self.tokenizer = AutoTokenizer.from_pretrained(adapter_dir or base_path)
        classifier = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1)
        if adapter_dir is not None:
            self.lm = PeftModel.from_pretrained(classifier, adapter_dir)
        else:
            lora = LoraConfig(
                r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                target_modules=list(config.lora_target_modules), layers_to_transform=list(config.lora_layers),
                bias="none", task_type="SEQ_CLS", modules_to_save=["pooler"],  # + the classifier (SEQ_CLS)
            )
            self.lm = get_peft_model(classifier, lora)
        self.first_adapted_layer = min(config.lora_layers)

    @property
    def classifier_model(self) -> nn.Module:
        return self.lm.get_base_model()

    def tokenize(self, profiles: list[str], candidates: list[str]) -> dict[str, torch.Tensor]:
        """Pairs right-padded to ``max_tokens``; the longer text of a pair is cut first."""
        if not profiles:  # the tokenizer cannot batch nothing
            empty = torch.zeros(0, self.config.max_tokens, dtype=torch.long)
            return {"input_ids": empty, "token_type_ids": empty.clone(), "attention_mask": empty.clone()}
        return dict(self.tokenizer(profiles, candidates, padding="max_length", truncation="longest_first",
                                   max_length=self.config.max_tokens, return_tensors="pt"))

    def _layers(self, hidden: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[nn.Module]) -> torch.Tensor:
        return run_encoder_layers(self.classifier_model.bert, hidden, attention_mask, layers)

    def lower(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Hidden states entering the first adapted layer (they do not depend on the adapters)."""
        bert = self.classifier_model.bert
        hidden = bert.embeddings(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"])
        return self._layers(hidden, batch["attention_mask"], bert.encoder.layer[:self.first_adapted_layer])

    def upper(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One logit per pair from the cached states: adapted layers, pooler, classifier."""
        model = self.classifier_model
        hidden = self._layers(states, attention_mask, model.bert.encoder.layer[self.first_adapted_layer:])
        return model.classifier(model.dropout(model.bert.pooler(hidden))).squeeze(-1)

    @torch.no_grad()
    def frozen_states(self, batch: Mapping[str, torch.Tensor], autocast: Any = contextlib.nullcontext(),
                      chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached lower states of every pair, cut to the longest pair; returns (states, attention mask).

        Pairs run in chunks of similar length cut to their longest pair; shorter rows are padded
        back with zeros (padding is masked everywhere downstream).
        """
        was_training = self.training
        self.eval()  # cached states must not see dropout
        mask = batch["attention_mask"]
        width = max(int(mask.sum(1).max()), 1) if len(mask) else 1
        hidden_size = self.classifier_model.config.hidden_size
        states = torch.zeros(len(mask), width, hidden_size, device=mask.device)
        for part, w in (chunks_by_length(mask, chunk) if len(mask) else []):
            with autocast:
                states[part, :w] = self.lower({k: v[part, :w] for k, v in batch.items()}).float()
        self.train(was_training)
        return states, mask[:, :width]

    @torch.no_grad()
    def score_pairs(self, profiles: list[str], candidates: list[str], chunk: int = 256) -> torch.Tensor:
        """Logits of (profile, candidate) pairs, float32 on the CPU."""
        self.eval()
        if not profiles:
            return torch.empty(0)
        device = next(self.parameters()).device
        batch = {k: v.to(device) for k, v in self.tokenize(profiles, candidates).items()}
        out = torch.empty(len(profiles), device=device)
        for part, w in chunks_by_length(batch["attention_mask"], chunk):
            sub = {k: v[part, :w] for k, v in batch.items()}
            out[part] = self.upper(self.lower(sub), sub["attention_mask"]).float()
        return out.cpu()

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable(self, state: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, param in self.named_parameters():
                if name in state:
                    param.copy_(state[name])


def save_reranker(reranker: PairReranker, out_dir: Path) -> None:
    """Adapter (+ pooler and classifier) via ``save_pretrained`` (safetensors), tokenizer, JSON config."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reranker.lm.save_pretrained(out_dir, safe_serialization=True)
    _canonical_adapter_config(out_dir / "adapter_config.json")
    reranker.tokenizer.save_pretrained(out_dir)
    (out_dir / CONFIG_FILE).write_text(json.dumps(asdict(reranker.config), indent=1, sort_keys=True) + "\n")


def load_reranker(directory: Path) -> PairReranker:
    """A saved re-ranker, in eval mode. Reads JSON and safetensors only."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} holds no re-ranker ({CONFIG_FILE} is missing)")
    config = RerankerConfig(**json.loads(config_path.read_text()))
    reranker = PairReranker(config, adapter_dir=directory)
    reranker.eval()
    return reranker


# -- re-ranking -----------------------------------------------------------------------------------
def top_unseen(scores: torch.Tensor, histories: list[list[str]], column: Mapping[str, int], n: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``n`` best columns outside its history, and which of them are real candidates.

    A user with fewer than ``n`` unseen items gets fewer real candidates (``valid`` is False for the rest).
    """
    masked = scores.float().clone()
    for row, history in enumerate(histories):
        seen = [column[item] for item in history if item in column]
        if seen:
            masked[row, seen] = -math.inf
    values, top = torch.topk(masked, min(n, masked.shape[1]), dim=1)
    return top, torch.isfinite(values)


def rerank_scores(base: torch.Tensor, top: torch.Tensor, valid: torch.Tensor, logits: torch.Tensor,
                  fusion_weight: float) -> torch.Tensor:
    """First-stage scores with the candidates' scores replaced by the re-ranker's, above all others.

    A candidate's new score is its logit plus ``fusion_weight`` times its first-stage score
    standardised over the user's candidates, shifted so that the lowest candidate is 1 above the
    best score of every other item. Items outside the candidates keep their scores (and order).
    """
    scores = base.float().clone()
    if not bool(valid.any()):
        return scores
    fused = logits.float()
    if fusion_weight:
        first = base.float().gather(1, top)
        count = valid.sum(1, keepdim=True).clamp(min=1)
        mean = (first * valid).sum(1, keepdim=True) / count
        std = (((first - mean) * valid) ** 2 / count).sum(1, keepdim=True).sqrt()
        fused = fused + fusion_weight * (first - mean) / (std + 1e-6)
    rows = torch.arange(len(scores)).unsqueeze(1).expand_as(top)
    others = scores.clone()
    others[rows[valid], top[valid]] = -math.inf
    floor = others.max(1).values
    floor = torch.where(torch.isfinite(floor), floor, torch.zeros_like(floor))
    lowest = fused.masked_fill(~valid, math.inf).min(1).values
    shifted = fused - lowest.unsqueeze(1) + floor.unsqueeze(1) + 1.0
    scores[rows[valid], top[valid]] = shifted[valid]
    return scores


def reranking_scorer(first_stage: Scorer, reranker: PairReranker, catalogue_ids: list[str], texts: list[str],
                     top_n: int | None = None, chunk: int = 256) -> Scorer:
    """A scorer that re-orders ``first_stage``'s top ``top_n`` unseen items with ``reranker``.

    Same contract as the scorers of ``pipelines.evaluation``: histories in, one score per
    catalogue item out. Seen items and items outside the candidates keep their first-stage scores.
    """
    if len(catalogue_ids) != len(texts):
        raise ValueError("reranking_scorer: catalogue_ids and texts differ in length")
    n = int(top_n or reranker.config.top_n)
    column = {item: i for i, item in enumerate(catalogue_ids)}
    text_of = dict(zip(catalogue_ids, texts))
    config = reranker.config

    def score(histories: list[list[str]]) -> torch.Tensor:
        base = first_stage(histories).float()
        top, valid = top_unseen(base, histories, column, n)
        profiles = [profile_text(h, text_of, config.profile_items, config.profile_item_chars) for h in histories]
        rows, cols = valid.nonzero(as_tuple=True)
        logits = torch.zeros(top.shape)
        logits[rows, cols] = reranker.score_pairs([profiles[r] for r in rows.tolist()],
                                                  [texts[c] for c in top[rows, cols].tolist()], chunk)
        return rerank_scores(base, top, valid, logits, config.fusion_weight)

    return score


def with_reranker(first_stage: Scorer, model_dir: Path, catalogue_ids: list[str], texts: list[str]) -> Scorer:
    """``first_stage`` re-ranked by the re-ranker saved in ``model_dir/reranker``, if there is one."""
    directory = Path(model_dir) / RERANKER_DIR
    if not (directory / CONFIG_FILE).is_file():
        return first_stage
    log.info("re-ranking the top candidates with %s", directory)
    return reranking_scorer(first_stage, load_reranker(directory), catalogue_ids, texts)


# -- training data --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingPairs:
    """Labelled (history prefix, item) pairs; a pair's profile is built from its prefix."""

    prefixes: list[list[str]]
    items: list[str]
    labels: list[float]

    def __len__(self) -> int:
        return len(self.items)


def training_pairs(train_histories: list[list[str]], first_stage: Scorer, catalogue_ids: list[str],
                   positions_per_user: int, negatives: int, pool: int, generator: torch.Generator,
                   chunk: int = 1024) -> TrainingPairs:
    """Positives at the last ``positions_per_user`` transitions of each *training* sequence, each
    with ``negatives`` items drawn from the first stage's top ``pool`` for the same prefix.

    Negatives never include an item of the user's training sequence (the positive among them:
    a later item of the same user is no negative either). Only training items are read, so
    validation and test targets cannot leak in.
    """
    column = {item: i for i, item in enumerate(catalogue_ids)}
    prefixes, positives, owners = [], [], []
    for user, history in enumerate(train_histories):
        for cut in range(len(history) - 1, max(len(history) - 1 - positions_per_user, 0), -1):
            if history[cut] in column:
                prefixes.append(list(history[:cut]))
                positives.append(history[cut])
                owners.append(user)
    pairs = TrainingPairs([], [], [])
    for start in range(0, len(prefixes), chunk):
        with torch.no_grad():
            scores = first_stage(prefixes[start:start + chunk]).float()
        histories = [train_histories[u] for u in owners[start:start + chunk]]
        top, valid = top_unseen(scores, histories, column, pool)
        for row in range(len(top)):
            candidates = top[row][valid[row]]
            drawn = candidates[torch.randperm(len(candidates), generator=generator)[:negatives]]
            prefix = prefixes[start + row]
            pairs.prefixes.append(prefix)
            pairs.items.append(positives[start + row])
            pairs.labels.append(1.0)
            for col in drawn.tolist():
                pairs.prefixes.append(prefix)
                pairs.items.append(catalogue_ids[col])
                pairs.labels.append(0.0)
    return pairs


class ValidationLists:
    """The first stage's top-n lists of the validation users, with their pairs' cached states."""

    def __init__(self, first_stage: Scorer, valid: EvalSet, catalogue_ids: list[str], text_of: Mapping[str, str],
                 reranker: PairReranker, runtime: Runtime) -> None:
        config = reranker.config
        column = {item: i for i, item in enumerate(catalogue_ids)}
        self.valid, self.catalogue_ids = valid, catalogue_ids
        with torch.no_grad():
            self.base = first_stage(valid.histories).float() if valid.targets else torch.zeros(0, len(catalogue_ids))
        self.top, self.mask = top_unseen(self.base, valid.histories, column, config.top_n)
        rows, cols = self.mask.nonzero(as_tuple=True)
        self.rows, self.cols = rows, cols
        profiles = [profile_text(h, text_of, config.profile_items, config.profile_item_chars) for h in valid.histories]
        batch = reranker.tokenize([profiles[r] for r in rows.tolist()],
                                  [text_of[catalogue_ids[c]] for c in self.top[rows, cols].tolist()])
        self.states, self.attention = reranker.frozen_states({k: v.to(runtime.device) for k, v in batch.items()},
                                                             runtime.autocast)

    def __len__(self) -> int:
        return len(self.rows)

    @torch.no_grad()
    def logits(self, reranker: PairReranker, runtime: Runtime, chunk: int = 512) -> torch.Tensor:
        reranker.eval()
        out = torch.zeros(self.top.shape)
        if not len(self):
            return out
        values = torch.empty(len(self))
        for part, width in chunks_by_length(self.attention, chunk):
            with runtime.autocast:
                logits = reranker.upper(self.states[part, :width], self.attention[part, :width])
            values[part.cpu()] = logits.float().cpu()
        out[self.rows, self.cols] = values
        return out

    def ndcg(self, logits: torch.Tensor | None, fusion_weight: float, k: int) -> float:
        """Validation NDCG@k of the re-ranked lists (``logits`` None: the first stage alone)."""
        if not self.valid.targets:
            return 0.0
        scores = self.base if logits is None else rerank_scores(self.base, self.top, self.mask, logits, fusion_weight)
        outcome = rank_eval_set(lambda _: scores, self.valid, self.catalogue_ids, k, chunk=len(self.valid.targets))
        return ranking_metrics(outcome.ranks, outcome.top_items, len(self.catalogue_ids), k)[f"ndcg@{k}"]


# -- the loop -------------------------------------------------------------------------------------
@dataclass
class RerankerResult:
    curve: list[dict[str, float]] = field(default_factory=list)
    first_stage_valid_ndcg: float = 0.0
    best_valid_ndcg: float = 0.0
    best_epoch: int = 0
    fusion_weight: float = 0.0
    train_pairs: int = 0
    valid_pairs: int = 0
    steps: int = 0
    stopped_by: str = "epochs"
    seconds: float = 0.0
    cache_seconds: float = 0.0
    pairs_per_second: float = 0.0

    def summary(self) -> dict[str, Any]:
        """What identical runs share (no timings): for the artifact's manifest and model card."""
        return {"first_stage_valid_ndcg@10": round(self.first_stage_valid_ndcg, 6),
                "best_valid_ndcg@10": round(self.best_valid_ndcg, 6), "best_epoch": self.best_epoch,
                "fusion_weight": self.fusion_weight, "train_pairs": self.train_pairs,
                "valid_pairs": self.valid_pairs, "steps": self.steps, "stopped_by": self.stopped_by}

    def timings(self) -> dict[str, float]:
        return {"train_seconds": round(self.seconds, 2), "cache_seconds": round(self.cache_seconds, 2),
                "pairs_per_second": round(self.pairs_per_second, 1)}


def train_reranker(first_stage: Scorer, sequences, catalogue_ids: list[str], texts: list[str],
                   settings: Mapping[str, Any], base_model: str = "auto", runtime: Runtime | None = None,
                   k: int = 10) -> tuple[PairReranker, RerankerResult]:
    """Trains a pair re-ranker on ``first_stage``'s candidates; keeps its best validation epoch.

    Args:
        first_stage: the trained first-stage scorer (its top candidates are the hard negatives
            and the lists to re-rank).
        sequences: the profiles stage's split; pairs come from ``train_items`` only, model
            selection from the validation targets only.
        settings: ``finetune.reranker``.

    Returns:
        The re-ranker (best epoch, fusion weight set, eval mode) and the run's record.
    """
    options = training_settings(settings)
    config = RerankerConfig.from_params(options, base_model)
    runtime = runtime or Runtime(torch.device("cpu"))
    started = time.monotonic()
    seed_everything(int(options["seed"]))
    generator = torch.Generator().manual_seed(int(options["seed"]))
    text_of = dict(zip(catalogue_ids, texts))
    pairs = training_pairs(list(sequences["train_items"]), first_stage, catalogue_ids,
                           int(options["positions_per_user"]), int(options["negatives"]), config.top_n, generator)
    if not len(pairs):
        raise ValueError("finetune.reranker: no user has two or more training items: no pairs to train on")
    reranker = PairReranker(config).to(runtime.device)
    log.info("re-ranker: caching the frozen layers' states of %d training pairs, then of the validation "
             "users' top %d lists (one pass of the lower layers each)", len(pairs), config.top_n)
    profiles = [profile_text(p, text_of, config.profile_items, config.profile_item_chars) for p in pairs.prefixes]
    batch = reranker.tokenize(profiles, [text_of[item] for item in pairs.items])
    states, attention = reranker.frozen_states({k_: v.to(runtime.device) for k_, v in batch.items()}, runtime.autocast)
    labels = torch.tensor(pairs.labels, device=runtime.device)
    valid = ValidationLists(first_stage, validation_set(sequences), catalogue_ids, text_of, reranker, runtime)
    result = RerankerResult(train_pairs=len(pairs), valid_pairs=len(valid),
                            first_stage_valid_ndcg=valid.ndcg(None, 0.0, k), cache_seconds=time.monotonic() - started)
    log.info("re-ranker: %d training pairs (%d positives), %d validation pairs cached in %.0fs; "
             "first stage alone: validation NDCG@%d %.4f", len(pairs), int(sum(pairs.labels)), len(valid),
             result.cache_seconds, k, result.first_stage_valid_ndcg)
    _fit(reranker, states, attention, labels, valid, options, runtime, result, generator, started, k)
    reranker.config.fusion_weight = result.fusion_weight
    reranker.eval()
    result.seconds = time.monotonic() - started
    return reranker, result


def _fit(reranker: PairReranker, states: torch.Tensor, attention: torch.Tensor, labels: torch.Tensor,
         valid: ValidationLists, options: Mapping[str, Any], runtime: Runtime, result: RerankerResult,
         generator: torch.Generator, started: float, k: int) -> None:
    """Epochs over the cached pairs; validation after each picks the epoch and the fusion weight."""
    batch_size, epochs = int(options["batch_size"]), int(options["epochs"])
    budget_s = float(options.get("budget_minutes") or 0) * 60 or math.inf
    optimizer = torch.optim.AdamW([p for p in reranker.parameters() if p.requires_grad],
                                  lr=float(options["learning_rate"]), weight_decay=float(options["weight_decay"]))
    steps_per_epoch = math.ceil(len(labels) / batch_size)
    progress = Progress(steps_per_epoch * epochs, 0, budget_s=budget_s, elapsed_s=time.monotonic() - started)
    best_state, pairs_seen, train_s = reranker.trainable_state(), 0, 0.0
    for epoch in range(1, epochs + 1):
        reranker.train()
        epoch_started, losses = time.monotonic(), []
        order = torch.randperm(len(labels), generator=generator).to(labels.device)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            width = max(int(attention[index].sum(1).max()), 1)
            with runtime.autocast:
                logits = reranker.upper(states[index, :width], attention[index, :width])
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels[index])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            result.steps += 1
            pairs_seen += len(index)
            progress.update(result.steps, epoch, losses[-1], pairs_seen)
            if time.monotonic() - started > budget_s:
                break
        train_s += time.monotonic() - epoch_started
        result.pairs_per_second = pairs_seen / max(train_s, 1e-9)
        logits = valid.logits(reranker, runtime)
        # A tie goes to the larger weight: the order closer to the first stage's.
        ndcg, weight = max((valid.ndcg(logits, float(w), k), float(w)) for w in options["fusion_weights"])
        mean_loss = sum(losses) / max(len(losses), 1)
        result.curve.append({"epoch": epoch, "step": result.steps, "loss": mean_loss, "valid_ndcg": ndcg,
                             "fusion_weight": weight, "seconds": round(time.monotonic() - started, 2)})
        log.info("re-ranker epoch %d: mean loss %.4f, %.1f pairs/s, validation NDCG@%d %.4f (fusion weight %g; "
                 "first stage alone %.4f)", epoch, mean_loss, result.pairs_per_second, k, ndcg, weight,
                 result.first_stage_valid_ndcg)
        if ndcg > result.best_valid_ndcg or result.best_epoch == 0:
            result.best_valid_ndcg, result.best_epoch, result.fusion_weight = ndcg, epoch, weight
            best_state = reranker.trainable_state()
        if time.monotonic() - started > budget_s:
            result.stopped_by = "budget"
            break
        if epoch - result.best_epoch >= int(options["patience"]):
            result.stopped_by = "early stopping"
            break
    progress.close()
    reranker.load_trainable(best_state)
