"""Item text vectors saved with a model, and reused wherever an item's text has not changed.

The text tower (the LoRA-adapted language model) is the costly part of building a catalogue. A
model's artifact keeps the text vector of every item it was saved with, labelled by a hash of the
item's text and by a hash of the adapter that computed it. Whoever loads that model for the same
items (evaluate, publish, a warm night that keeps the champion's adapters) takes the saved vector
of each item whose text hash matches and runs the tower only on the rest. A vector is reused only
under the very adapter that computed it, so reuse changes no score.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from pipelines.model.recommender import Catalogue, SequenceRecommender

log = logging.getLogger(__name__)

TEXT_VECTORS_FILE = "text_vectors.safetensors"
ADAPTER_WEIGHTS = "adapter/adapter_model.safetensors"
LABELS_KEY = "labels"  # metadata: the adapter's hash and each row's text hash


def text_hash(text: str) -> str:
    """What identifies an item's text: the model reads nothing else of the item."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def adapter_hash(model_dir: Path) -> str:
    """The adapter weights' content hash: the text vectors of a model depend on nothing else that changes."""
    return hashlib.sha256((Path(model_dir) / ADAPTER_WEIGHTS).read_bytes()).hexdigest()


def save_text_vectors(model_dir: Path, texts: Sequence[str], vectors: torch.Tensor) -> None:
    """Writes the vectors of ``texts`` beside a saved model (after its adapter, whose hash labels them)."""
    from safetensors.torch import save_file

    if len(texts) != len(vectors):
        raise ValueError(f"{len(texts)} texts but {len(vectors)} text vectors")
    # One metadata key: safetensors writes several in no fixed order, and the artifact's bytes (its
    # content hash) must not vary between identical runs.
    labels = json.dumps({"adapter": adapter_hash(model_dir), "text_hashes": [text_hash(t) for t in texts]})
    save_file({"vectors": vectors.detach().float().cpu().contiguous()}, Path(model_dir) / TEXT_VECTORS_FILE,
              metadata={LABELS_KEY: labels})


def load_text_vectors(model_dir: Path) -> dict[str, torch.Tensor]:
    """Text hash -> vector, as saved with the model in ``model_dir``; empty where none were saved or
    they were computed under another adapter than the one in ``model_dir``."""
    from safetensors import safe_open

    path = Path(model_dir) / TEXT_VECTORS_FILE
    if not path.is_file():
        return {}
    with safe_open(str(path), framework="pt") as handle:
        labels = json.loads((handle.metadata() or {}).get(LABELS_KEY, "{}"))
        if labels.get("adapter") != adapter_hash(model_dir):
            log.warning("%s was computed under another adapter: not reused", path)
            return {}
        vectors = handle.get_tensor("vectors")
    return dict(zip(labels["text_hashes"], vectors))


@dataclass(frozen=True)
class TextReuse:
    reused: int
    computed: int

    def describe(self) -> str:
        return (f"{self.reused} of {self.reused + self.computed} item text vectors reused (text unchanged), "
                f"{self.computed} computed")


def catalogue_reusing(model: SequenceRecommender, item_ids: Sequence[str], texts: Sequence[str],
                      known: Mapping[str, torch.Tensor]) -> tuple[Catalogue, TextReuse]:
    """A catalogue with fixed text vectors: ``known``'s where an item's text hash is there, the text
    tower's (``model``'s adapters) for the rest. ``known`` must come from the same adapters."""
    from pipelines.model.recommender import Catalogue

    hashes = [text_hash(t) for t in texts]
    missing = [i for i, h in enumerate(hashes) if h not in known]
    device = next(model.parameters()).device
    vectors = torch.zeros(len(texts), model.text.output_dim, device=device)
    reused = [i for i, h in enumerate(hashes) if h in known]
    if reused:
        vectors[reused] = torch.stack([known[hashes[i]] for i in reused]).to(device)
    if missing:
        partial = Catalogue(model, [item_ids[i] for i in missing], [texts[i] for i in missing])
        with torch.no_grad():
            vectors[missing] = partial.text_vectors().float()
    return Catalogue(model, list(item_ids), list(texts), fixed_text=vectors), TextReuse(len(reused), len(missing))


def model_catalogue(model: SequenceRecommender, model_dir: Path | None, item_ids: Sequence[str],
                    texts: Sequence[str]) -> tuple[Catalogue, torch.Tensor]:
    """The catalogue a stage scores ``model`` (loaded from ``model_dir``) with, and its text vectors,
    reusing the vectors saved with the model; logs how many were reused."""
    catalogue, reuse = catalogue_reusing(model, item_ids, texts, load_text_vectors(model_dir) if model_dir else {})
    log.info("%s", reuse.describe())
    return catalogue, catalogue.text_vectors()
