"""Warm-night settings compared on the nights of a kept project, each judged on the next interval.

    python bench/warm_variants.py PROJECT --nights D1,D2,... --variants VARIANTS.json [--night-days D]

PROJECT is a project whose registry holds a champion for the nights: the temporary project of
``bench/nights.py --keep`` (or the demo's working tree after ``make demo``). For every night it runs
extract, validate and profiles with PROJECT's params.yaml (the night's date laid over), then the
finetune stage once per variant (each variant's candidate, reports and checkpoints go under
``PROJECT/variants/<night>/<name>``, so nothing the project serves is touched) and judges each
candidate on the next ``--night-days`` days as ``bench/nights.py`` does. VARIANTS.json maps a
name to params laid over ``finetune``, e.g.::

    {"shipped": {},
     "half rate, best trained epoch": {"warm_nights": {"learning_rate_scale": 0.5, "replay_ratio": 0,
                                                       "keep_champion_unless_better": false}},
     "cold": {"warm_start": false}}

Prints, per night and variant, the next-interval NDCG@10 (or "-" where no one is active in the
interval) and the finetune's validation curve, then each variant's mean over the nights. Choose
settings on nights before the one you report (the validation nights), never on it.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make `bench` (and the project) importable
    sys.path.insert(0, str(PROJECT_ROOT))

from bench.nights import DAY_S, candidate_scorer, midnight_s, night_slices, read_events  # noqa: E402
from bench.quality import progress, stage_env  # noqa: E402
from pipelines.config import laid_over  # noqa: E402


def run_stage(project: Path, stage: str, params_file: Path, night: str) -> None:
    """``python -m tasks.<stage>`` in the project's directory (its params' relative paths), as a night runs it.

    Raises:
        RuntimeError: the stage failed (the message carries the end of its output).
    """
    done = subprocess.run([sys.executable, "-m", f"tasks.{stage}", "--params", str(params_file),
                           "--logical-date", night], cwd=project, capture_output=True, text=True,
                          env=stage_env(None))
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} for {night} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def validation_curve(reports: Path) -> list[float]:
    with open(reports / "finetune" / "curve.csv", newline="") as handle:
        return [float(row["valid_ndcg"]) for row in csv.DictReader(handle)]


def judge_night(params: dict[str, Any], events, night: str, night_days: int, model_dir: Path) -> float | None:
    """Next-interval NDCG@10 of the model in ``model_dir``; None where no one is active in the interval."""
    from bench.next_interval import interval_cases, judge, score_cases
    from pipelines.profiles.build import load_profiles

    profiles = load_profiles(params["paths"]["profiles"])
    item_ids = list(profiles.items["item_id"])
    night_s, interval_s = midnight_s(dt.date.fromisoformat(night)), night_days * DAY_S
    cases = interval_cases(events, night_s, night_s + interval_s)
    if not cases.user_ids:
        return None
    served, _, _ = candidate_scorer(model_dir, profiles, params, night_s)  # as a night serves it: with its prior
    scores = score_cases(served, cases, item_ids)
    return judge(scores, cases, item_ids, 10, night_slices(events, cases, night_s, interval_s))["all"]["ndcg@10"]


def compare(project: Path, nights: list[str], variants: dict[str, dict[str, Any]], night_days: int
            ) -> dict[str, list[float | None]]:
    import yaml

    params_file = project / "params.yaml"
    base = yaml.safe_load(params_file.read_text())
    events = read_events(base["paths"]["warehouse_url"])
    results: dict[str, list[float | None]] = {name: [] for name in variants}
    for night in nights:
        params = laid_over(base, {"run": {"logical_date": night}})
        night_file = project / f"params-variants-{night}.yaml"
        night_file.write_text(yaml.safe_dump(params, sort_keys=False))
        for stage in ("extract", "validate", "profiles"):
            run_stage(project, stage, night_file, night)
        for name, changes in variants.items():
            out = project / "variants" / night / name.replace("/", "_")
            variant = laid_over(params, {"finetune": changes, "paths": {
                key: str(out / key) for key in ("candidate", "reports", "checkpoints")}})
            variant_file = out / "params.yaml"
            out.mkdir(parents=True, exist_ok=True)
            variant_file.write_text(yaml.safe_dump(variant, sort_keys=False))
            progress(f"{night}: finetune {name!r} ...")
            run_stage(project, "finetune", variant_file, night)
            ndcg = judge_night(variant, events, night, night_days, out / "candidate")
            results[name].append(ndcg)
            curve = " ".join(f"{value:.4f}" for value in validation_curve(out / "reports"))
            print(f"{night} {name:<40} next-interval NDCG@10 {'-' if ndcg is None else f'{ndcg:.4f}'}"
                  f"   validation curve {curve}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="a project with a champion (bench/nights.py --keep, or the demo)")
    parser.add_argument("--nights", required=True, help="comma-separated logical dates (YYYY-MM-DD)")
    parser.add_argument("--variants", type=Path, required=True, help="JSON: name -> params laid over finetune")
    parser.add_argument("--night-days", type=int, default=7, help="days of each judged interval (default 7)")
    args = parser.parse_args(argv)
    variants = json.loads(args.variants.read_text())
    results = compare(args.project.resolve(), args.nights.split(","), variants, args.night_days)
    print("mean next-interval NDCG@10 over the nights:")
    for name, values in results.items():
        judged = [value for value in values if value is not None]
        mean = f"{sum(judged) / len(judged):.4f}" if judged else "-"
        print(f"  {name:<40} {mean}  ({' '.join('-' if v is None else f'{v:.4f}' for v in values)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
