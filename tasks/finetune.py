"""Stage finetune: LoRA fine-tuning of the recommender on the night's profiles.

Runs on one process, or under ``torchrun --nproc_per_node N -m tasks.finetune`` on several
(DDP: gloo on CPUs, NCCL on GPUs). Warm-starts from the champion when its architecture fits,
checkpoints every ``finetune.checkpoint_every_steps`` steps and resumes after a crash.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import shutil
from pathlib import Path
from typing import Any

from tasks.common import run_stage, stage_parser

log = logging.getLogger("retrain.finetune")


def warm_start_source(params: dict[str, Any], logical_date: str) -> tuple[int | None, Path | None]:
    """The newest blessed model of an earlier night: its version and verified artifact directory.

    Not simply today's champion: once tonight's model is promoted it is the champion, and a rerun
    of tonight must start from where tonight started to reproduce the same model.
    """
    from pipelines.registry.store import Registry

    with Registry(params["paths"]["registry_url"], Path(params["paths"]["artifact_store"])) as registry:
        earlier = [v for v in registry.list_versions() if v.blessed and v.run_date < logical_date]
        if not earlier:
            return None, None
        source = max(earlier, key=lambda v: v.version)
        return source.version, registry.artifact_path(source.version)


def run_fingerprint(profiles_manifest: dict[str, Any], settings: dict[str, Any], warm_from: int | None) -> str:
    """Identifies one training run: a checkpoint is resumed only by the run that wrote it."""
    payload = json.dumps({"data": profiles_manifest["files"], "params": settings, "warm_from": warm_from},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def build_model(settings: dict[str, Any], item_ids: list[str], champion_dir: Path | None):
    """The champion-initialised model when ``champion_dir`` is given and fits, else a fresh one."""
    from pipelines.model.recommender import RecommenderConfig, SequenceRecommender, warm_start_model

    config = RecommenderConfig.from_params(settings, item_ids)
    if champion_dir is not None:
        model = warm_start_model(champion_dir, config)
        if model is not None:
            return model, True
    return SequenceRecommender(config), False


def finetune_stage(args: argparse.Namespace, params: dict[str, Any]) -> None:
    import torch

    from pipelines.evaluate.ranking import validation_set
    from pipelines.core.io import atomic_dir, read_json, write_csv, write_json, write_manifest
    from pipelines.model.recommender import Catalogue, export_merged, resolve_base_model, save_model
    from pipelines.profiles.build import load_profiles
    from pipelines.model.training import seed_everything, setup_runtime, train

    settings, paths = params["finetune"], params["paths"]
    runtime = setup_runtime(str(settings.get("device", "auto")))
    profiles_dir = Path(paths["profiles"])
    source = read_json(profiles_dir / "manifest.json")
    profiles = load_profiles(profiles_dir)
    item_ids = list(profiles.items["item_id"])
    champion_version, champion_dir = (warm_start_source(params, source["logical_date"])
                                      if settings.get("warm_start", True) else (None, None))
    seed_everything(int(settings["seed"]))
    model, warm = build_model(settings, item_ids, champion_dir)
    model.to(runtime.device)
    catalogue = Catalogue(model, item_ids, list(profiles.items["text"]))
    fingerprint = run_fingerprint(source, settings, champion_version if warm else None)
    checkpoints = Path(paths.get("checkpoints", "state/checkpoints")) / fingerprint[:16]
    result = train(model, catalogue, list(profiles.sequences["train_items"]), validation_set(profiles.sequences),
                   settings, runtime=runtime, checkpoint_dir=checkpoints, fingerprint=fingerprint)
    if not runtime.is_main:
        return  # one process writes the artifacts
    with torch.no_grad():
        item_table = catalogue.item_table(catalogue.text_vectors()).float().cpu()
    card = {
        "base model": str(resolve_base_model(model.config.base_model)),
        "logical date": source["logical_date"], "data interval": source["data_interval"],
        "warm start": f"from version {champion_version}" if warm else "none (cold start)",
        "params": settings, "best validation ndcg@10": round(result.best_valid_ndcg, 5),
        "best epoch": result.best_epoch, "steps": result.steps, "stopped by": result.stopped_by,
        "items in ID map": len(model.config.item_ids), "device": runtime.device.type, "processes": runtime.world_size,
        "torch": torch.__version__,
    }
    # The artifact holds nothing that varies between identical runs (no timings), so a rerun of
    # the same night yields the same content hash and the registry recognises it.
    with atomic_dir(Path(paths["candidate"])) as staging:
        save_model(model.cpu(), staging, card=card, item_table=item_table, item_ids=catalogue.item_ids)
        if settings.get("export_merged"):
            export_merged(model, staging / "merged")
        write_manifest(staging, stage="finetune", logical_date=source["logical_date"],
                       data_interval=source["data_interval"], params=settings,
                       warm_start_version=champion_version if warm else None)
    reports = Path(paths["reports"]) / "finetune"
    write_csv(reports / "curve.csv", ["step", "epoch", "loss", "valid_ndcg", "seconds"], result.curve)
    write_json(reports / "training.json", {
        "best_valid_ndcg@10": result.best_valid_ndcg, "best_epoch": result.best_epoch, "steps": result.steps,
        "samples": result.samples, "train_seconds": round(result.seconds, 2),
        "samples_per_second": round(result.samples / max(result.seconds, 1e-9), 1),
        "stopped_by": result.stopped_by, "resumed_at_step": result.resumed_at_step, "device": result.device,
        "processes": result.world_size, "machine": platform.machine(), "threads": torch.get_num_threads(),
    })
    shutil.rmtree(checkpoints, ignore_errors=True)  # the run is complete: nothing left to resume
    log.info("candidate saved to %s (best validation NDCG@10 %.4f)", paths["candidate"], result.best_valid_ndcg)


def main(argv: list[str] | None = None) -> int:
    return run_stage(finetune_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
