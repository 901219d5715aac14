"""The DAG and dvc.yaml describe one graph: same stages, same order, same commands."""

from __future__ import annotations

import shlex
from itertools import product
from pathlib import PurePosixPath

import pytest
import yaml

from .conftest import PROJECT_ROOT
from .test_dag_integrity import dag_edges

LOGICAL_DATE = "2026-03-02"


@pytest.fixture(scope="module")
def dvc_stages() -> dict[str, dict]:
    with open(PROJECT_ROOT / "dvc.yaml") as handle:
        return yaml.safe_load(handle)["stages"]


def paths(entries: list) -> list[str]:
    """dvc.yaml lists a path either bare or as a one-key mapping with options."""
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries or []]


def overlaps(a: str, b: str) -> bool:
    """Same path, or one inside the other (a dep on data/x/y needs the stage that outputs data/x)."""
    pa, pb = PurePosixPath(a), PurePosixPath(b)
    return pa == pb or pa in pb.parents or pb in pa.parents


def dvc_edges(stages: dict[str, dict]) -> set[tuple[str, str]]:
    """A -> B when one of B's deps is (inside) one of A's outs, metrics or plots."""
    outputs = {name: paths(s.get("outs")) + paths(s.get("metrics")) + paths(s.get("plots"))
               for name, s in stages.items()}
    return {
        (a, b)
        for a, b in product(stages, stages)
        if a != b and any(overlaps(dep, out) for dep in paths(stages[b].get("deps")) for out in outputs[a])
    }


def reachable(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    closure = set(edges)
    while True:
        extra = {(a, d) for a, b in closure for c, d in closure if b == c} - closure
        if not extra:
            return closure
        closure |= extra


def transitive_reduction(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Drops A -> C when A -> ... -> C exists anyway; the DAG declares only these."""
    closure = reachable(edges)
    return {(a, c) for a, c in edges if not any((a, b) in closure and (b, c) in closure for _, b in edges)}


def test_helpers_on_a_known_graph():
    edges = {("a", "b"), ("b", "c"), ("a", "c")}
    assert transitive_reduction(edges) == {("a", "b"), ("b", "c")}
    stages = {"a": {"outs": ["data/a"]}, "b": {"deps": ["data/a/part"], "outs": [{"m/b": {"cache": False}}]},
              "c": {"deps": ["m/b", "data/ab"]}}
    assert dvc_edges(stages) == {("a", "b"), ("b", "c")}  # data/ab is not inside data/a


def test_task_ids_are_the_dvc_stages(retrain_dag, dvc_stages):
    assert sorted(retrain_dag.task_ids) == sorted(dvc_stages)


def test_edges_match_the_dvc_graph(retrain_dag, dvc_stages):
    expected = dvc_edges(dvc_stages)
    # Same ordering constraints, and no redundant edge in the DAG (dvc's extract -> profiles is
    # implied by extract -> validate -> profiles).
    assert reachable(dag_edges(retrain_dag)) == reachable(expected)
    assert dag_edges(retrain_dag) == transitive_reduction(expected)


def test_commands_match_dvc(retrain_dag, dvc_stages):
    for task in retrain_dag.tasks:
        rendered = task.render_template(task.command, {"ds": LOGICAL_DATE, "params": {"dry_run": False}})
        expected = dvc_stages[task.task_id]["cmd"].replace("${run.logical_date}", LOGICAL_DATE)
        assert shlex.split(rendered) == shlex.split(expected), task.task_id


def test_a_dry_run_adds_dry_run_to_promote_only(retrain_dag, dvc_stages):
    assert retrain_dag.params["dry_run"] is False  # a scheduled night promotes
    for task in retrain_dag.tasks:
        rendered = task.render_template(task.command, {"ds": LOGICAL_DATE, "params": {"dry_run": True}})
        expected = dvc_stages[task.task_id]["cmd"].replace("${run.logical_date}", LOGICAL_DATE)
        extra = ["--dry-run"] if task.task_id == "promote" else []
        assert shlex.split(rendered) == shlex.split(expected) + extra, task.task_id
