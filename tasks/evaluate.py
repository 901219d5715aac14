"""Stage evaluate: candidate, re-evaluated champion and MostPop on the same split; the blessing."""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path
from typing import Any

from tasks.common import run_stage, stage_parser

log = logging.getLogger("retrain.evaluate")


def read_curve(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def champion_model(params: dict[str, Any]):
    """The current champion from the registry, or (None, None) on the first night."""
    from pipelines.model import load_model
    from pipelines.registry import Registry

    with Registry(params["paths"]["registry_url"], Path(params["paths"]["artifact_store"])) as registry:
        champion = registry.champion()
        if champion is None:
            return None, None
        return champion.version, load_model(registry.artifact_path(champion.version))


def evaluate_stage(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipelines.evaluation import bless, evaluate_scorer, model_scorer, most_popular_scorer, test_set
    from pipelines.io import atomic_dir, read_json, write_json, write_manifest
    from pipelines.model import Catalogue, load_model
    from pipelines.profiles import load_profiles
    from pipelines.report import render_report

    k = int(params["evaluate"]["k"])
    paths = params["paths"]
    profiles = load_profiles(paths["profiles"])
    source = read_json(Path(paths["profiles"]) / "manifest.json")
    item_ids, texts = list(profiles.items["item_id"]), list(profiles.items["text"])
    split = test_set(profiles.sequences)
    scorers = {"candidate": model_scorer(candidate := load_model(Path(paths["candidate"])),
                                         Catalogue(candidate, item_ids, texts))}
    champion_version, champion = champion_model(params)
    if champion is not None:
        scorers["champion"] = model_scorer(champion, Catalogue(champion, item_ids, texts))
    scorers["MostPop"] = most_popular_scorer(profiles.items["train_count"].to_numpy())
    models = {}
    for name, scorer in scorers.items():
        models[name], _ = evaluate_scorer(scorer, split, item_ids, k)
        log.info("%s: %s", name, {m: round(v, 4) for m, v in models[name].items()})
    blessing = bless(params["evaluate"].get("thresholds") or [], models["candidate"],
                     models.get("champion"), models["MostPop"])
    blessing.update(champion_version=champion_version, logical_date=source["logical_date"])
    log.info("decision: %s (%s)", blessing["decision"], blessing["reason"])
    reports = Path(paths["reports"]) / "evaluate"
    with atomic_dir(Path(paths["evaluate"])) as staging:
        write_json(staging / "blessing.json", blessing)
        write_json(staging / "metrics.json", models)
        write_manifest(staging, stage="evaluate", logical_date=source["logical_date"],
                       data_interval=source["data_interval"], params=params["evaluate"],
                       candidate_manifest=read_json(Path(paths["candidate"]) / "manifest.json")["files"])
    write_json(reports / "metrics.json", {"candidate": models["candidate"], "MostPop": models["MostPop"],
                                          **({"champion": models["champion"]} if "champion" in models else {}),
                                          "blessed": blessing["blessed"]})
    html = render_report(logical_date=source["logical_date"], data_interval=source["data_interval"],
                         models=models, blessing=blessing,
                         curve=read_curve(Path(paths["reports"]) / "finetune" / "curve.csv"),
                         data_summary={"users": len(profiles.sequences), "evaluated users": len(split.targets),
                                       "items": len(item_ids),
                                       "training interactions": int(profiles.sequences["train_items"].map(len).sum())},
                         champion_version=champion_version, k=k)
    tmp = reports / "report.html.tmp"
    tmp.write_text(html)
    tmp.replace(reports / "report.html")


def main(argv: list[str] | None = None) -> int:
    return run_stage(evaluate_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
