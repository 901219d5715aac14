"""The publish stage: it needs the night's decision, serves the champion that is current (the
previous one after a refusal), says why in its summary, and never leaves a half-written night."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.publish import writer as publish
from tests.reliability.night import NIGHTS, USER_IDS, make_project, published, run_task, stage_night

EXIT_RETRYABLE, EXIT_NON_RETRYABLE = 1, 3


def summary(params) -> dict:
    return json.loads((Path(params["paths"]["publish"]) / "summary.json").read_text())


@pytest.fixture
def project(tmp_path, monkeypatch, small_models):
    """Night one promoted (version 1, champion) and published."""
    monkeypatch.chdir(tmp_path)
    params, params_file = make_project(tmp_path)
    stage_night(params, NIGHTS[0], small_models[0], blessed=True)
    assert run_task("promote", params_file, NIGHTS[0]) == 0
    assert run_task("publish", params_file, NIGHTS[0]) == 0
    return params, params_file


def test_a_promoted_candidate_is_served(project, small_models):
    params, params_file = project
    stage_night(params, NIGHTS[1], small_models[1], blessed=True)
    assert run_task("promote", params_file, NIGHTS[1]) == 0
    assert run_task("publish", params_file, NIGHTS[1]) == 0
    result = summary(params)
    assert (result["promotion"], result["candidate_version"], result["model_version"], result["served"]) == (
        "PROMOTED", 2, 2, "candidate")
    assert result["reason"] == "candidate version 2 was promoted; serving it (version 2)"
    rows = published(params, NIGHTS[1])
    assert set(rows["model_version"]) == {2} and len(rows) == result["rows"] == len(USER_IDS) * 5
    assert set(published(params, NIGHTS[0])["model_version"]) == {1}  # the earlier night is untouched


def test_a_refused_candidate_leaves_the_previous_champion_serving(project, small_models):
    params, params_file = project
    stage_night(params, NIGHTS[1], small_models[1], blessed=False)
    assert run_task("promote", params_file, NIGHTS[1]) == 0
    assert run_task("publish", params_file, NIGHTS[1]) == 0
    result = summary(params)
    assert (result["promotion"], result["candidate_version"], result["model_version"], result["served"]) == (
        "REFUSED", 2, 1, "previous champion")
    assert result["reason"] == (
        "candidate version 2 was refused (candidate ndcg@10 0.0100 - champion 0.0300 < required +0.0000); "
        f"serving the current champion, version 1 (registered for {NIGHTS[0]})")
    tonight, last_night = published(params, NIGHTS[1]), published(params, NIGHTS[0])
    assert set(tonight["model_version"]) == {1}
    assert tonight.drop(columns="run_date").equals(last_night.drop(columns="run_date"))  # same model, same lists


def test_a_refused_first_night_publishes_nothing_and_says_so(tmp_path, monkeypatch, small_models):
    monkeypatch.chdir(tmp_path)
    params, params_file = make_project(tmp_path)
    stage_night(params, NIGHTS[0], small_models[0], blessed=False)
    assert run_task("promote", params_file, NIGHTS[0]) == 0
    assert run_task("publish", params_file, NIGHTS[0]) == 0
    result = summary(params)
    assert (result["model_version"], result["served"], result["rows"]) == (None, "none", 0)
    assert result["reason"].endswith("there is no champion yet: nothing to publish")


@pytest.mark.parametrize("decision", ["missing", "stale"])
def test_publish_needs_the_nights_decision(project, small_models, decision):
    params, params_file = project
    before_rows, before_summary = published(params, NIGHTS[0]), summary(params)
    if decision == "missing":
        (Path(params["paths"]["promote"]) / "decision.json").unlink()
    stage_night(params, NIGHTS[1], small_models[1], blessed=True)  # evaluated, but promote has not run
    assert run_task("publish", params_file, NIGHTS[1]) == EXIT_NON_RETRYABLE
    assert published(params, NIGHTS[1]).empty
    assert published(params, NIGHTS[0]).equals(before_rows) and summary(params) == before_summary


def test_a_publish_failing_midway_leaves_the_night_as_it_was(project, small_models, monkeypatch):
    params, params_file = project
    stage_night(params, NIGHTS[1], small_models[1], blessed=True)
    assert run_task("promote", params_file, NIGHTS[1]) == 0
    # Night two was published once with the old champion (as if before a late promotion).
    publish.write_recommendations(params["paths"]["warehouse_url"], NIGHTS[1], 1,
                                  published(params, NIGHTS[0]).drop(columns=["run_date", "model_version"]))
    before, before_summary = published(params, NIGHTS[1]), summary(params)
    real_insert = publish.insert_batch

    def insert_then_fail(conn, rows, *table):
        real_insert(conn, rows, *table)  # tonight's old rows are deleted and the new ones inserted, uncommitted
        raise ConnectionError("warehouse went away mid-write")

    monkeypatch.setattr(publish, "insert_batch", insert_then_fail)
    assert run_task("publish", params_file, NIGHTS[1]) == EXIT_RETRYABLE
    assert published(params, NIGHTS[1]).equals(before) and set(before["model_version"]) == {1}
    assert summary(params) == before_summary

    monkeypatch.setattr(publish, "insert_batch", real_insert)
    assert run_task("publish", params_file, NIGHTS[1]) == 0  # the retry completes the night
    assert set(published(params, NIGHTS[1])["model_version"]) == {2}


def test_the_summary_says_when_the_champion_moved_after_the_decision():
    from pipelines.publish.serving import serving_reason

    decision = {"version": 5, "decision": "PROMOTED", "reason": "every threshold passed", "champion_version": 5}
    assert serving_reason(decision, 4, "2026-02-01") == (
        "candidate version 5 was promoted; the champion has changed since the decision (version 5 then); "
        "serving the current champion, version 4 (registered for 2026-02-01)")


def test_under_the_same_champion_only_changed_users_are_rescored_and_rows_equal_a_full_rescore(project, small_models):
    import pandas as pd

    params, params_file = project
    assert summary(params)["rescore"] == "full rescore: no previous lists"
    sequences_file = Path(params["paths"]["profiles"]) / "sequences.parquet"
    sequences = pd.read_parquet(sequences_file)
    changed = list(sequences["user_id"][:3])
    sequences["train_items"] = [list(h) + ["i23"] if user in changed else list(h)
                                for user, h in zip(sequences["user_id"], sequences["train_items"])]
    sequences.to_parquet(sequences_file, index=False)  # three users acted since the last night
    stage_night(params, NIGHTS[1], small_models[1], blessed=False)  # the champion stays: same model, same items
    assert run_task("promote", params_file, NIGHTS[1]) == 0
    assert run_task("publish", params_file, NIGHTS[1]) == 0
    assert summary(params)["rescore"] == (f"incremental: {len(USER_IDS) - 3} of {len(USER_IDS)} users unchanged "
                                          "under the same model kept their lists; 3 rescored")
    incremental = published(params, NIGHTS[1])
    (Path(params["paths"]["publish"]) / "user_lists.parquet").unlink()  # no previous lists: a full rescore
    assert run_task("publish", params_file, NIGHTS[1]) == 0
    assert summary(params)["rescore"] == "full rescore: no previous lists"
    full = published(params, NIGHTS[1])
    assert len(full) == len(USER_IDS) * 5
    pd.testing.assert_frame_equal(incremental[["user_id", "rank", "item_id", "model_version"]],
                                  full[["user_id", "rank", "item_id", "model_version"]])
    assert (incremental["score"] - full["score"]).abs().max() < 1e-5
    changed_rows = full[full["user_id"].isin(changed)]
    assert not changed_rows["item_id"].eq("i23").any()  # the new history is excluded: they were rescored


def test_a_new_version_with_the_champions_weights_keeps_the_lists(project, small_models):
    """A warm night that kept the champion's weights is promoted as a new version of the same model:
    its card differs, its scores do not, so unchanged users keep their rows (under the new version)."""
    params, params_file = project
    before = published(params, NIGHTS[0])
    stage_night(params, NIGHTS[1], small_models[0], blessed=True)  # the same weights as version 1
    assert run_task("promote", params_file, NIGHTS[1]) == 0
    assert run_task("publish", params_file, NIGHTS[1]) == 0
    result = summary(params)
    assert (result["model_version"], result["rescore"]) == (
        2, f"incremental: {len(USER_IDS)} of {len(USER_IDS)} users unchanged under the same model kept their lists; "
           "0 rescored")
    tonight = published(params, NIGHTS[1])
    assert set(tonight["model_version"]) == {2}
    assert tonight[["user_id", "rank", "item_id"]].equals(before[["user_id", "rank", "item_id"]])


def test_a_new_champion_falls_back_to_a_full_rescore(project, small_models):
    params, params_file = project
    stage_night(params, NIGHTS[1], small_models[1], blessed=True)
    assert run_task("promote", params_file, NIGHTS[1]) == 0
    assert run_task("publish", params_file, NIGHTS[1]) == 0
    assert summary(params)["rescore"] == ("full rescore: the model, the catalogue, publish.k or the recency prior "
                                          "changed since the previous publish")


def test_a_recorded_recency_prior_is_served_and_its_nightly_counts_mean_a_full_rescore(project, small_models):
    """Version 2 has version 1's weights and a recency prior: every list is scored again, with the
    prior counted before the profiles' interval end, as ``scorer_as_of`` serves it."""
    from pipelines.model.recommender import load_model, serving_scorer
    from pipelines.profiles.build import load_profiles
    from pipelines.publish.writer import top_k_recommendations
    from pipelines.ranking.recency import DAY_S, ItemTimeline, RecencyPrior, scorer_as_of

    params, params_file = project
    before = published(params, NIGHTS[0])
    stage_night(params, NIGHTS[1], small_models[0], blessed=True, recency_prior={"weight": 4.0, "window_days": 3})
    assert run_task("promote", params_file, NIGHTS[1]) == 0
    assert run_task("publish", params_file, NIGHTS[1]) == 0
    result = summary(params)
    day = 1_770_681_600 // DAY_S  # the profiles' interval end, 2026-02-10
    assert result["recency_prior"] == {"weight": 4.0, "window_days": 3, "as_of_day": day}
    assert result["rescore"].startswith("full rescore: the model, the catalogue, publish.k or the recency prior")

    profiles = load_profiles(params["paths"]["profiles"])
    item_ids, texts = list(profiles.items["item_id"]), list(profiles.items["text"])
    seqs = profiles.sequences
    histories = [list(t) + [v, s] for t, v, s in zip(seqs["train_items"], seqs["valid_item"], seqs["test_item"])]
    scorer = scorer_as_of(serving_scorer(load_model(small_models[0]), item_ids, texts),
                          ItemTimeline.from_sequences(seqs, item_ids), RecencyPrior(4.0, 3), day)
    expected = top_k_recommendations(scorer, list(seqs["user_id"]), histories, item_ids, 5)
    tonight = published(params, NIGHTS[1])
    assert tonight[["user_id", "rank", "item_id"]].equals(expected[["user_id", "rank", "item_id"]])
    assert not tonight[["user_id", "rank", "item_id"]].equals(before[["user_id", "rank", "item_id"]])


@pytest.mark.postgres
def test_publish_without_write_grants_names_the_permission_and_changes_nothing(tmp_path, monkeypatch, small_models,
                                                                               postgres_url, caplog, capsys):
    """A real PostgreSQL role that may read the warehouse but not write to it: publish exits 3 (a
    retry cannot grant a permission), says so in one line, and leaves every night's rows as they were."""
    import uuid

    import sqlalchemy as sa
    import yaml

    monkeypatch.chdir(tmp_path)
    params, params_file = make_project(tmp_path)
    params["paths"]["warehouse_url"] = postgres_url
    params_file.write_text(yaml.safe_dump(params))
    stage_night(params, NIGHTS[0], small_models[0], blessed=True)
    assert run_task("promote", params_file, NIGHTS[0]) == 0
    assert run_task("publish", params_file, NIGHTS[0]) == 0  # as the owner: the tables exist, night one's rows too
    stage_night(params, NIGHTS[1], small_models[1], blessed=True)
    assert run_task("promote", params_file, NIGHTS[1]) == 0
    before_rows, before_summary = published(params, NIGHTS[0]), summary(params)

    reader = f"reader_{uuid.uuid4().hex[:10]}"
    owner = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    database = sa.make_url(postgres_url).database
    with owner.connect() as conn:
        for statement in (f'CREATE ROLE "{reader}" LOGIN', f'GRANT CONNECT ON DATABASE "{database}" TO "{reader}"',
                          f'GRANT USAGE ON SCHEMA public TO "{reader}"',
                          f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{reader}"'):
            conn.exec_driver_sql(statement)
    try:
        monkeypatch.setenv("RETRAIN_WAREHOUSE_URL", sa.make_url(postgres_url).set(username=reader)
                           .render_as_string(hide_password=False))
        caplog.clear()
        capsys.readouterr()
        assert run_task("publish", params_file, NIGHTS[1]) == EXIT_NON_RETRYABLE
        said = "\n".join(record.getMessage() for record in caplog.records) + capsys.readouterr().err
        assert f"publishing to the warehouse postgresql+psycopg2://{reader}@" in said, said[-2000:]
        assert "(RETRAIN_WAREHOUSE_URL): permission denied: grant the user the rights it needs" in said, said[-2000:]
        assert "Traceback" not in said
    finally:
        with owner.connect() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{reader}"')
            conn.exec_driver_sql(f'DROP ROLE "{reader}"')
        owner.dispose()
    assert published(params, NIGHTS[1]).empty
    assert published(params, NIGHTS[0]).equals(before_rows) and summary(params) == before_summary
