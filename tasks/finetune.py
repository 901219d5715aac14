"""Stage finetune: LoRA fine-tuning of the recommender on the night's profiles."""

from __future__ import annotations

import argparse
import csv
import logging
import platform
from pathlib import Path
from typing import Any

from tasks.common import run_stage, stage_parser

log = logging.getLogger("retrain.finetune")


def write_curve(path: Path, curve: list[dict[str, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["step", "epoch", "loss", "valid_ndcg", "seconds"])
        writer.writeheader()
        writer.writerows(curve)
    tmp.replace(path)


def finetune_stage(args: argparse.Namespace, params: dict[str, Any]) -> None:
    import torch

    from pipelines.evaluation import validation_set
    from pipelines.io import atomic_dir, read_json, write_json, write_manifest
    from pipelines.model import Catalogue, RecommenderConfig, SequenceRecommender, resolve_base_model, save_model
    from pipelines.profiles import load_profiles
    from pipelines.training import seed_everything, train

    settings = params["finetune"]
    profiles_dir = Path(params["paths"]["profiles"])
    source = read_json(profiles_dir / "manifest.json")
    profiles = load_profiles(profiles_dir)
    item_ids = list(profiles.items["item_id"])
    seed_everything(int(settings["seed"]))
    config = RecommenderConfig.from_params(settings, item_ids)
    model = SequenceRecommender(config)
    catalogue = Catalogue(model, item_ids, list(profiles.items["text"]))
    result = train(model, catalogue, list(profiles.sequences["train_items"]),
                   validation_set(profiles.sequences), settings)
    with torch.no_grad():
        item_table = catalogue.item_table(catalogue.text_vectors())
    card = {
        "base model": str(resolve_base_model(config.base_model)) if config.base_model == "auto" else config.base_model,
        "logical date": source["logical_date"], "data interval": source["data_interval"],
        "params": settings, "best validation ndcg@10": round(result.best_valid_ndcg, 5),
        "best epoch": result.best_epoch, "steps": result.steps, "stopped by": result.stopped_by,
        "device": "cpu", "torch": torch.__version__,
    }
    # The artifact holds nothing that varies between identical runs (no timings), so a rerun of
    # the same night yields the same content hash and the registry recognises it.
    with atomic_dir(Path(params["paths"]["candidate"])) as staging:
        save_model(model, staging, card=card, item_table=item_table)
        write_manifest(staging, stage="finetune", logical_date=source["logical_date"],
                       data_interval=source["data_interval"], params=settings)
    reports = Path(params["paths"]["reports"]) / "finetune"
    write_curve(reports / "curve.csv", result.curve)
    write_json(reports / "training.json", {
        "best_valid_ndcg@10": result.best_valid_ndcg, "best_epoch": result.best_epoch, "steps": result.steps,
        "samples": result.samples, "train_seconds": round(result.seconds, 2),
        "samples_per_second": round(result.samples / max(result.seconds, 1e-9), 1),
        "stopped_by": result.stopped_by, "machine": platform.machine(), "threads": torch.get_num_threads(),
    })
    log.info("candidate saved to %s (best validation NDCG@10 %.4f)", params["paths"]["candidate"],
             result.best_valid_ndcg)


def main(argv: list[str] | None = None) -> int:
    return run_stage(finetune_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
