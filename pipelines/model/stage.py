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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.config import FinetuneParams, PathsParams
    from pipelines.model.recommender import Catalogue, SequenceRecommender
    from pipelines.model.training import Runtime, TrainResult

log = logging.getLogger("retrain.finetune")


@dataclass(frozen=True)
class WarmSource:
    """The model a night starts from: its version, verified artifact and the end of its data."""

    version: int
    directory: Path
    data_interval_end: str


def warm_start_source(registry_url: str, artifact_store: Path, logical_date: str) -> WarmSource | None:
    """The champion as of the night (``Registry.champion_as_of``), or None.

    Not simply today's champion: once tonight's model is promoted it is the champion, and a rerun
    of tonight must start from where tonight started to reproduce the same model; a backfilled
    night must not start from a model that has seen its future.
    """
    from pipelines.registry.store import Registry

    with Registry(registry_url, artifact_store) as registry:
        source = registry.champion_as_of(logical_date)
        if source is None:
            return None
        return WarmSource(source.version, registry.artifact_path(source.version), source.data_interval_end)


def run_fingerprint(profiles_manifest: Mapping[str, Any], settings: FinetuneParams, warm_from: int | None) -> str:
    """Identifies one training run: a checkpoint is resumed only by the run that wrote it."""
    payload = json.dumps({"data": profiles_manifest["files"], "params": settings.model_dump(), "warm_from": warm_from},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def build_model(settings: FinetuneParams, item_ids: list[str], champion_dir: Path | None
                ) -> tuple[SequenceRecommender, bool]:
    """The champion-initialised model when ``champion_dir`` is given and fits, else a fresh one.

    Raises:
        NonRetryableError: the champion's artifact is not a loadable model (a retry reads the same files).
    """
    from safetensors import SafetensorError

    from pipelines.core.failures import first_line
    from pipelines.core.io import NonRetryableError
    from pipelines.model.recommender import RecommenderConfig, SequenceRecommender, warm_start_model

    config = RecommenderConfig.from_params(settings, item_ids)
    if champion_dir is not None:
        try:
            model = warm_start_model(champion_dir, config)
        except (OSError, ValueError, KeyError, SafetensorError) as exc:
            raise NonRetryableError(
                f"the champion's artifact {champion_dir} cannot be loaded to start from ({first_line(exc)}); "
                "roll the champion back (retrain registry rollback) or run the night with "
                "finetune.warm_start: false") from None
        if model is not None:
            return model, True
    return SequenceRecommender(config), False


def run_finetune(settings: FinetuneParams, paths: PathsParams) -> None:
    """Trains on ``paths.profiles`` and writes the candidate (``paths.candidate``) and the training
    reports; the night is the profiles manifest's logical date. Under DDP only the main process writes.

    A night that starts from the champion trains as ``finetune.warm_nights`` says (``pipelines.model.warm``)
    and, with ``keep_champion_unless_better``, keeps the champion's weights unless an epoch beats them
    on validation."""
    import torch

    from pipelines.core.io import atomic_dir, read_json, write_manifest
    from pipelines.ranking.scoring import validation_set
    from pipelines.model.recommender import export_merged, save_model
    from pipelines.model.training import seed_everything, setup_runtime, train
    from pipelines.profiles.build import load_profiles

    runtime = setup_runtime(settings.device)
    profiles_dir = Path(paths.profiles)
    source = read_json(profiles_dir / "manifest.json")
    profiles = load_profiles(profiles_dir)
    item_ids = list(profiles.items["item_id"])
    warm_source = (warm_start_source(paths.registry_url, Path(paths.artifact_store), source["logical_date"])
                   if settings.warm_start else None)
    seed_everything(settings.seed)
    model, warm = build_model(settings, item_ids, warm_source.directory if warm_source else None)
    model.to(runtime.device)
    warm_from = warm_source.version if warm else None
    plan = night_plan(model, settings, profiles, warm_source if warm else None)
    text_only = model.mark_chosen_items(list(profiles.sequences["train_items"]) + list(profiles.groups["train_items"]))
    plan.summary["text_only_items"] = text_only
    log.info("%d items of the ID map never occur in the training data: their ID rows are masked (text alone)",
             text_only)
    fingerprint = run_fingerprint(source, settings, warm_from)
    checkpoints = Path(paths.checkpoints) / fingerprint[:16]
    valid = validation_set(profiles.sequences)
    if plan.histories:
        result = train(model, plan.catalogue, plan.histories, valid, plan.settings, runtime=runtime,
                       checkpoint_dir=checkpoints, fingerprint=fingerprint,
                       keep_start=warm and settings.warm_nights.keep_champion_unless_better)
        if warm and result.best_epoch == 0 and not result.averaged_epochs:
            log.info("warm night: no epoch beat the champion on validation (NDCG@10 %.4f): the candidate keeps the "
                     "champion's weights", result.best_valid_ndcg)
    else:
        result = untrained_result(model, plan, valid, runtime)
    if not runtime.is_main:
        return  # one process writes the artifacts
    text_vectors = plan_text_vectors(plan)
    with torch.no_grad():
        item_table = plan.catalogue.item_table(text_vectors).float().cpu()
    card = model_card(model, source, settings, result, runtime, warm_from, plan.summary)
    # The artifact holds nothing that varies between identical runs (no timings), so a rerun of
    # the same night yields the same content hash and the registry recognises it.
    with atomic_dir(Path(paths.candidate)) as staging:
        save_model(model.cpu(), staging, card=card, item_table=item_table, item_ids=plan.catalogue.item_ids,
                   texts=list(profiles.items["text"]), text_vectors=text_vectors.cpu())
        if settings.export_merged:
            export_merged(model, staging / "merged")
        write_manifest(staging, stage="finetune", logical_date=source["logical_date"],
                       data_interval=source["data_interval"], params=settings.model_dump(),
                       warm_start_version=warm_from)
    write_training_reports(Path(paths.reports) / "finetune", result, plan.summary)
    shutil.rmtree(checkpoints, ignore_errors=True)  # the run is complete: nothing left to resume
    log.info("candidate saved to %s (best validation NDCG@10 %.4f)", paths.candidate, result.best_valid_ndcg)


@dataclass(frozen=True)
class NightPlan:
    """What tonight trains on, with which settings, over which catalogue; ``summary`` goes into the
    model card and training.json."""

    settings: FinetuneParams
    histories: list[list[str]]
    catalogue: Catalogue
    summary: dict[str, Any]


def night_plan(model: SequenceRecommender, settings: FinetuneParams, profiles: Any,
               warm_source: WarmSource | None) -> NightPlan:
    """A cold night trains on every history with ``settings``; a warm one as ``settings.warm_nights``
    says: the windows with events newer than the champion's data, the champion's text tower kept."""
    from pipelines.model.recommender import Catalogue
    from pipelines.model.text_vectors import catalogue_reusing, load_text_vectors
    from pipelines.model.warm import cutoff_seconds, freeze_text_tower, replay_sample, split_windows, warm_settings

    item_ids, texts = list(profiles.items["item_id"]), list(profiles.items["text"])
    user_histories = list(profiles.sequences["train_items"])
    # Explicit groups' choices are sequences too: the model learns what groups pick together (the
    # group-level model evaluate and publish score a group's own history with).
    group_histories = [list(h) for h in profiles.groups["train_items"]]
    if warm_source is None:
        return NightPlan(settings, user_histories + group_histories, Catalogue(model, item_ids, texts),
                         {"kind": "cold", "sequences": len(user_histories) + len(group_histories)})
    warm = settings.warm_nights
    summary: dict[str, Any] = {"kind": "warm", "from_version": warm_source.version,
                               "new_since": warm_source.data_interval_end}
    if warm.train_text_tower:
        catalogue = Catalogue(model, item_ids, texts)
    else:
        freeze_text_tower(model)
        catalogue, reuse = catalogue_reusing(model, item_ids, texts, load_text_vectors(warm_source.directory))
        summary.update(text_vectors_reused=reuse.reused, text_vectors_computed=reuse.computed)
        log.info("warm night: the champion's text tower is kept; %s", reuse.describe())
    histories = user_histories
    if warm.new_events_only and "train_ts" in profiles.sequences:
        new, old = split_windows(user_histories, list(profiles.sequences["train_ts"]),
                                 cutoff_seconds(warm_source.data_interval_end), model.config.max_seq_len)
        replayed = replay_sample(old, round(warm.replay_ratio * len(new)), settings.seed) if new else []
        histories = new + replayed
        summary.update(new_windows=len(new), replayed_windows=len(replayed))
        log.info("warm night: %d training windows end in events since %s, %d of the %d earlier windows replayed "
                 "beside them", len(new), warm_source.data_interval_end, len(replayed), len(old))
    elif warm.new_events_only:
        log.warning("warm night: the profiles hold no event times (train_ts): training on every history")
    summary["windows"] = len(histories) + len(group_histories)
    return NightPlan(warm_settings(settings), histories + group_histories, catalogue, summary)


def untrained_result(model: SequenceRecommender, plan: NightPlan, valid: Any, runtime: Runtime) -> TrainResult:
    """Nothing is new since the champion: the candidate is the champion, validated as it stands."""
    from pipelines.model.training import TrainResult, validate

    log.info("warm night: no event is newer than the champion's data; the candidate keeps its weights")
    with runtime.autocast:
        ndcg = validate(model, plan.catalogue, valid, 10, plan_text_vectors(plan))
    model.eval()
    return TrainResult(best_valid_ndcg=ndcg, stopped_by="no new events", trained_on=str(runtime.device),
                       world_size=runtime.world_size)


def plan_text_vectors(plan: NightPlan):
    """The final text vectors of the catalogue (float32), without dropout."""
    import torch

    plan.catalogue.model.eval()
    with torch.no_grad():
        return plan.catalogue.text_vectors().float()


def model_card(model: SequenceRecommender, source: Mapping[str, Any], settings: FinetuneParams,
               result: TrainResult, runtime: Runtime, warm_from: int | None,
               plan: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the candidate is and how it was trained, saved with it (nothing that varies between runs)."""
    import torch

    from pipelines.model.recommender import resolve_base_model

    return {
        "base model": str(resolve_base_model(model.config.base_model)),
        "logical date": source["logical_date"], "data interval": source["data_interval"],
        "warm start": f"from version {warm_from}" if warm_from is not None else "none (cold start)",
        "trained on": dict(plan or {}),
        "params": settings.model_dump(), "best validation ndcg@10": round(result.best_valid_ndcg, 5),
        "best epoch": result.best_epoch, "averaged epochs": result.averaged_epochs, "steps": result.steps,
        "stopped by": result.stopped_by,
        "items in ID map": len(model.config.item_ids), "device": runtime.device.type, "processes": runtime.world_size,
        "torch": torch.__version__,
    }


def write_training_reports(reports: Path, result: TrainResult, plan: Mapping[str, Any] | None = None) -> None:
    """curve.csv (the report's training chart, ``dvc plots``) and training.json (speed and outcome)."""
    import torch

    from pipelines.core.io import write_csv, write_json

    write_csv(reports / "curve.csv", ["step", "epoch", "loss", "valid_ndcg", "seconds"], result.curve)
    write_json(reports / "training.json", {
        "best_valid_ndcg@10": result.best_valid_ndcg, "best_epoch": result.best_epoch,
        "averaged_epochs": result.averaged_epochs, "weight_averaging_valid_ndcg@10": result.averaging,
        "steps": result.steps,
        "samples": result.samples, "train_seconds": round(result.seconds, 2),
        "samples_per_second": round(result.samples / max(result.seconds, 1e-9), 1),
        "stopped_by": result.stopped_by, "resumed_at_step": result.resumed_at_step, "device": result.trained_on,
        "processes": result.world_size, "machine": platform.machine(), "threads": torch.get_num_threads(),
        "plan": dict(plan or {}),
    })
