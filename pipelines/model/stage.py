"""The finetune stage: LoRA fine-tuning of the recommender on the night's profiles.

Runs on one process or several (DDP: gloo on CPUs, NCCL on GPUs). Warm-starts from the champion
when its architecture fits, checkpoints every ``finetune.checkpoint_every_steps`` steps and
resumes after a crash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.config import FinetuneParams, PathsParams
    from pipelines.model.recommender import Catalogue, SequenceRecommender
    from pipelines.model.training import Runtime, TrainResult

log = logging.getLogger("retrain.finetune")


def warm_start_source(registry_url: str, artifact_store: Path, logical_date: str) -> tuple[int | None, Path | None]:
    """The champion as of the night (``Registry.champion_as_of``): its version and verified artifact
    directory, or Nones.

    Not simply today's champion: once tonight's model is promoted it is the champion, and a rerun
    of tonight must start from where tonight started to reproduce the same model; a backfilled
    night must not start from a model that has seen its future.
    """
    from pipelines.registry.store import Registry

    with Registry(registry_url, artifact_store) as registry:
        source = registry.champion_as_of(logical_date)
        if source is None:
            return None, None
        return source.version, registry.artifact_path(source.version)


def run_fingerprint(profiles_manifest: Mapping[str, Any], settings: FinetuneParams, warm_from: int | None) -> str:
    """Identifies one training run: a checkpoint is resumed only by the run that wrote it."""
    payload = json.dumps({"data": profiles_manifest["files"], "params": settings.model_dump(), "warm_from": warm_from},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def build_model(settings: FinetuneParams, item_ids: list[str], champion_dir: Path | None
                ) -> tuple[SequenceRecommender, bool]:
    """The champion-initialised model when ``champion_dir`` is given and fits, else a fresh one."""
    from pipelines.model.recommender import RecommenderConfig, SequenceRecommender, warm_start_model

    config = RecommenderConfig.from_params(settings, item_ids)
    if champion_dir is not None:
        model = warm_start_model(champion_dir, config)
        if model is not None:
            return model, True
    return SequenceRecommender(config), False


def run_finetune(settings: FinetuneParams, paths: PathsParams) -> None:
    """Trains on ``paths.profiles`` and writes the candidate (``paths.candidate``) and the training
    reports; the night is the profiles manifest's logical date. Under DDP only the main process writes."""
    from pipelines.core.io import atomic_dir, read_json, write_manifest
    from pipelines.ranking.scoring import validation_set
    from pipelines.model.recommender import Catalogue, export_merged, save_model
    from pipelines.model.training import seed_everything, setup_runtime, train
    from pipelines.profiles.build import load_profiles

    runtime = setup_runtime(settings.device)
    profiles_dir = Path(paths.profiles)
    source = read_json(profiles_dir / "manifest.json")
    profiles = load_profiles(profiles_dir)
    item_ids = list(profiles.items["item_id"])
    champion_version, champion_dir = (
        warm_start_source(paths.registry_url, Path(paths.artifact_store), source["logical_date"])
        if settings.warm_start else (None, None))
    seed_everything(settings.seed)
    model, warm = build_model(settings, item_ids, champion_dir)
    model.to(runtime.device)
    catalogue = Catalogue(model, item_ids, list(profiles.items["text"]))
    fingerprint = run_fingerprint(source, settings, champion_version if warm else None)
    checkpoints = Path(paths.checkpoints) / fingerprint[:16]
    # Explicit groups' choices are sequences too: the model learns what groups pick together (the
    # group-level model evaluate and publish score a group's own history with).
    histories = list(profiles.sequences["train_items"]) + [list(h) for h in profiles.groups["train_items"]]
    result = train(model, catalogue, histories, validation_set(profiles.sequences),
                   settings, runtime=runtime, checkpoint_dir=checkpoints, fingerprint=fingerprint)
    if not runtime.is_main:
        return  # one process writes the artifacts
    warm_from = champion_version if warm else None
    item_table = catalogue_item_table(catalogue)
    card = model_card(model, source, settings, result, runtime, warm_from)
    # The artifact holds nothing that varies between identical runs (no timings), so a rerun of
    # the same night yields the same content hash and the registry recognises it.
    with atomic_dir(Path(paths.candidate)) as staging:
        save_model(model.cpu(), staging, card=card, item_table=item_table, item_ids=catalogue.item_ids)
        if settings.export_merged:
            export_merged(model, staging / "merged")
        write_manifest(staging, stage="finetune", logical_date=source["logical_date"],
                       data_interval=source["data_interval"], params=settings.model_dump(),
                       warm_start_version=warm_from)
    write_training_reports(Path(paths.reports) / "finetune", result)
    shutil.rmtree(checkpoints, ignore_errors=True)  # the run is complete: nothing left to resume
    log.info("candidate saved to %s (best validation NDCG@10 %.4f)", paths.candidate, result.best_valid_ndcg)


def catalogue_item_table(catalogue: Catalogue):
    """The item embedding table saved beside the weights (float32, on the CPU)."""
    import torch

    with torch.no_grad():
        return catalogue.item_table(catalogue.text_vectors()).float().cpu()


def model_card(model: SequenceRecommender, source: Mapping[str, Any], settings: FinetuneParams,
               result: TrainResult, runtime: Runtime, warm_from: int | None) -> dict[str, Any]:
    """What the candidate is and how it was trained, saved with it (nothing that varies between runs)."""
    import torch

    from pipelines.model.recommender import resolve_base_model

    return {
        "base model": str(resolve_base_model(model.config.base_model)),
        "logical date": source["logical_date"], "data interval": source["data_interval"],
        "warm start": f"from version {warm_from}" if warm_from is not None else "none (cold start)",
        "params": settings.model_dump(), "best validation ndcg@10": round(result.best_valid_ndcg, 5),
        "best epoch": result.best_epoch, "steps": result.steps, "stopped by": result.stopped_by,
        "items in ID map": len(model.config.item_ids), "device": runtime.device.type, "processes": runtime.world_size,
        "torch": torch.__version__,
    }


def write_training_reports(reports: Path, result: TrainResult) -> None:
    """curve.csv (the report's training chart, ``dvc plots``) and training.json (speed and outcome)."""
    import torch

    from pipelines.core.io import write_csv, write_json

    write_csv(reports / "curve.csv", ["step", "epoch", "loss", "valid_ndcg", "seconds"], result.curve)
    write_json(reports / "training.json", {
        "best_valid_ndcg@10": result.best_valid_ndcg, "best_epoch": result.best_epoch, "steps": result.steps,
        "samples": result.samples, "train_seconds": round(result.seconds, 2),
        "samples_per_second": round(result.samples / max(result.seconds, 1e-9), 1),
        "stopped_by": result.stopped_by, "resumed_at_step": result.resumed_at_step, "device": result.trained_on,
        "processes": result.world_size, "machine": platform.machine(), "threads": torch.get_num_threads(),
    })
