"""Crash-safe training checkpoints in safetensors + JSON (never pickles).

A checkpoint holds what an uninterrupted run would have in memory at that step: the trainable
weights, the best weights so far and the best epochs' weights kept for averaging, AdamW's moments,
every random generator's state, the epoch's batch order, the cached text vectors and the loop
counters. Resuming from it continues the very same run. It is written to a temporary directory and
renamed into place, so a kill during the write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

LATEST = "latest"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor that training changes: trainable parameters and the non-LM module state."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()
            if k in trainable or not k.startswith("text.")}


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"{index}.{key}"] = torch.as_tensor(value).detach().cpu().clone().contiguous()
    return tensors


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state_dict = optimizer.state_dict()
    restored: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        restored.setdefault(int(index), {})[key] = value
    state_dict["state"] = restored
    optimizer.load_state_dict(state_dict)


def save_checkpoint(directory: Path, *, model: torch.nn.Module, best: dict[str, torch.Tensor],
                    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                    state: dict[str, Any], top: list[dict[str, torch.Tensor]] | None = None) -> None:
    """Atomically replaces ``directory/latest`` with the current training state; ``top`` holds the
    weights of the epochs kept for averaging, in order."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=".ckpt-"))
    try:
        save_file(trainable_state(model), staging / "model.safetensors")
        save_file(best, staging / "best.safetensors")
        flat_top = {f"{index}/{name}": value
                    for index, weights in enumerate(top or []) for name, value in weights.items()}
        save_file(flat_top or {"empty": torch.zeros(0)}, staging / "top.safetensors")
        save_file(optimizer_tensors(optimizer) or {"empty": torch.zeros(0)}, staging / "optimizer.safetensors")
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, staging / "tensors.safetensors")
        (staging / "state.json").write_text(json.dumps(state, indent=1))
        old = directory / ".previous"
        shutil.rmtree(old, ignore_errors=True)
        if (directory / LATEST).exists():
            os.replace(directory / LATEST, old)
        os.replace(staging, directory / LATEST)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The latest complete checkpoint, or None. A missing or partial one is never loaded."""
    latest = directory / LATEST
    if not (latest / "state.json").is_file():
        previous = directory / ".previous"  # a kill between the two renames leaves it here
        latest = previous if (previous / "state.json").is_file() else None
    if latest is None:
        return None
    optimizer = load_file(latest / "optimizer.safetensors")
    optimizer.pop("empty", None)
    return {
        "top": _split_top(load_file(latest / "top.safetensors")) if (latest / "top.safetensors").is_file() else [],
        "model": load_file(latest / "model.safetensors"),
        "best": load_file(latest / "best.safetensors"),
        "optimizer": optimizer,
        "tensors": load_file(latest / "tensors.safetensors"),
        "state": json.loads((latest / "state.json").read_text()),
    }


def _split_top(flat: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """``save_checkpoint``'s ``top`` back from its "index/name" keys."""
    flat.pop("empty", None)
    top: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        index, name = key.split("/", 1)
        top.setdefault(int(index), {})[name] = value
    return [top[index] for index in sorted(top)]
