"""``retrain doctor``: a deployment's configuration checked before its first night.

Each check reads, connects or writes a probe file and removes it; none changes anything a night
keeps (it never migrates the registry, creates a database or pushes to the DVC remote). A check
that cannot run because an earlier one failed (no valid params) says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.core.failures import first_line, permanent_reason

if TYPE_CHECKING:
    from pipelines.config import Params

MIN_FREE_BYTES = 1 << 30  # a store with less free space than this fails its check


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def run_checks(params_file: Path, project_root: Path, environ: Mapping[str, str] = os.environ) -> list[Check]:
    """Every check, in the order a night needs them."""
    params_check, params = checked("params", lambda: check_params(params_file, environ))
    checks = [params_check]
    if params is None:
        return checks + [Check(name, False, "not checked: the params must be valid first") for name in
                         ("warehouse", "registry", "artifact store", "DVC cache", "DVC remote", "base model",
                          "device")] + [check_airflow_connections(environ)]
    steps: list[tuple[str, Callable[[], str]]] = [
        ("warehouse", lambda: check_warehouse(params, environ)),
        ("registry", lambda: check_registry(params.paths.registry_url)),
        ("artifact store", lambda: check_writable(Path(params.paths.artifact_store))),
        ("DVC cache", lambda: check_writable(project_root / ".dvc" / "cache")),
        ("DVC remote", lambda: check_dvc_remote(project_root)),
        ("base model", lambda: check_base_model(params.finetune.base_model)),
        ("device", lambda: check_device(params.finetune.device)),
    ]
    checks += [checked(name, step)[0] for name, step in steps]
    return checks + [check_airflow_connections(environ)]


def checked(name: str, step: Callable[[], object]) -> tuple[Check, object]:
    """Runs one check: its detail (or value) when it passes, what to fix when it raises."""
    try:
        value = step()
    except Exception as exc:  # noqa: BLE001 - every failure becomes a line, never a traceback
        return Check(name, False, permanent_reason(exc) or first_line(exc)), None
    if isinstance(value, tuple):
        return Check(name, True, value[0]), value[1]
    return Check(name, True, str(value)), value


def check_params(params_file: Path, environ: Mapping[str, str]) -> tuple[str, Params]:
    """Valid, with the connection URLs the environment lays over it (as a stage reads them)."""
    from pipelines.config import load_params

    return f"{params_file} is valid", load_params(params_file, environ=environ)


def check_warehouse(params: Params, environ: Mapping[str, str]) -> str:
    """Connects once (no retries) and checks every mapped table and column."""
    import sqlalchemy as sa

    from pipelines.core import warehouse
    from pipelines.extract.mapping import parse_extract_mapping

    from pipelines.core.io import NonRetryableError

    url, source = warehouse.resolve_url(environ, params.paths.warehouse_url)
    mapping = parse_extract_mapping(params.extract.mapping)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():  # connecting would create it
        raise NonRetryableError(f"{warehouse.redact(url)} (from {source}): no such SQLite file; point {source} at "
                                "the warehouse (or write the demo's: `retrain demo-data`)")
    engine = sa.create_engine(url)
    try:
        with warehouse.connect(engine, attempts=1, backoff_s=0, max_backoff_s=0) as conn:
            tables = warehouse.reflect_tables(conn, mapping)
    finally:
        engine.dispose()
    return f"{warehouse.redact(url)} (from {source}) has the mapped tables {', '.join(sorted(tables))}"


def check_registry(url: str) -> str:
    """Reachable, and its schema at the head revision (read only: never migrates)."""
    import sqlalchemy as sa

    from pipelines.core.io import NonRetryableError
    from pipelines.registry import migrations
    from pipelines.registry.store import REGISTRY_SETTING, registry_url

    parsed = registry_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise NonRetryableError(f"{shown} does not exist yet: run `retrain registry init`")
    engine = sa.create_engine(parsed)
    try:
        with engine.connect() as conn:
            revision = migrations.current_revision(conn)
    except sa.exc.DBAPIError as exc:
        advice = permanent_reason(exc) or first_line(exc)
        raise NonRetryableError(f"{shown} ({REGISTRY_SETTING}): {advice}") from None
    finally:
        engine.dispose()
    if revision != migrations.HEAD_REVISION:
        raise NonRetryableError(f"{shown} is at schema revision {revision!r}, this code needs "
                                f"{migrations.HEAD_REVISION!r}: run `retrain registry init` to migrate it")
    return f"{shown} at schema revision {revision}"


def check_writable(path: Path) -> str:
    """A probe file can be written where ``path`` is (or would be created), with space to spare."""
    from pipelines.core.io import NonRetryableError

    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise NonRetryableError(f"{existing} is not a directory (needed for {path})")
    with tempfile.NamedTemporaryFile(dir=existing, prefix=".retrain-doctor-") as probe:
        probe.write(b"probe")
        probe.flush()
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise NonRetryableError(f"{path}: only {free / 2**20:.0f} MiB free under {existing}: free space or move it")
    where = "" if existing == path else f" (to be created under {existing})"
    return f"{path} writable{where}, {free / 2**30:.1f} GiB free"


def check_dvc_remote(root: Path) -> str:
    """The project's default remote takes and returns a probe file, which is then removed (its root
    is created where missing, as the first ``dvc push`` would)."""
    from dvc.repo import Repo

    from pipelines.registry.transfer import REMOTE_URL_ENV

    if not (root / ".dvc").is_dir():
        return f"{root} is not a DVC project: nights keep their outputs in the working tree"
    with Repo(str(root)) as repo:
        name = repo.config["core"].get("remote")
        if not name:
            return (f"no default remote: outputs stay in this machine's cache (workers that share no working "
                    f"tree need one: set {REMOTE_URL_ENV})")
        remote = repo.cloud.get_remote(name)
        probe = remote.fs.join(remote.path, f".retrain-doctor-{os.getpid()}")
        remote.fs.makedirs(remote.path, exist_ok=True)
        remote.fs.pipe_file(probe, b"probe")
        try:
            if remote.fs.cat_file(probe) != b"probe":
                raise OSError(f"the remote {name!r} returned other bytes than were written")
        finally:
            remote.fs.rm_file(probe)
    return f"remote {name!r} ({remote.fs.protocol}) takes and returns a file"


def check_base_model(name: str) -> str:
    """The tokenizer and the weights load, offline (a cut-short weights file fails here, not at night)."""
    from transformers import AutoModel, AutoTokenizer

    from pipelines.model.recommender import resolve_base_model

    path = resolve_base_model(name)
    AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    parameters = sum(p.numel() for p in model.parameters())
    return f"{path} ({model.config.model_type}, {parameters / 1e6:.1f}M parameters)"


def check_device(requested: str) -> str:
    import torch

    from pipelines.model.training import setup_runtime

    if requested == "cuda":
        setup_runtime("cuda")  # raises where torch sees no GPU
    if torch.cuda.is_available():
        return f"finetune.device {requested}: {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} GPU(s))"
    return f"finetune.device {requested}: the CPU (torch {torch.__version__}, no CUDA device here)"


def check_airflow_connections(environ: Mapping[str, str]) -> Check:
    """The ``warehouse`` and ``registry`` connections: from the environment, else Airflow's own
    lookup (``airflow connections get``: metadata database and secrets backends)."""
    from pipelines.core import warehouse

    found = []
    for conn_id in ("warehouse", "registry"):
        variable = f"AIRFLOW_CONN_{conn_id.upper()}"
        try:
            if environ.get(variable, "").strip():
                url = warehouse.airflow_connection_url(environ[variable], variable)
                found.append(f"{conn_id} from {variable} ({warehouse.redact(url)})")
                continue
            value = airflow_connection(conn_id, environ)
            if value is None:
                found.append(f"{conn_id} not defined (the stages use the RETRAIN_* variables or params.yaml)")
                continue
            url = warehouse.airflow_connection_url(value, f"Airflow connection {conn_id!r}")
            found.append(f"{conn_id} from Airflow ({warehouse.redact(url)})")
        except Exception as exc:  # noqa: BLE001 - a line, never a traceback
            return Check("Airflow connections", False, permanent_reason(exc) or first_line(exc))
    return Check("Airflow connections", True, "; ".join(found))


def airflow_connection(conn_id: str, environ: Mapping[str, str]) -> str | None:
    """The connection as Airflow's JSON, or None where it is not defined or Airflow is not here."""
    airflow = shutil.which("airflow", path=environ.get("PATH"))
    if airflow is None:
        return None
    done = subprocess.run([airflow, "connections", "get", conn_id, "--output", "json"], capture_output=True,
                          text=True, timeout=120, env=dict(environ), stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        if "not found" in (done.stdout + done.stderr).lower():
            return None
        raise RuntimeError(f"`airflow connections get {conn_id}` failed: "
                           f"{(done.stderr.strip().splitlines() or ['no message'])[-1]}")
    rows = json.loads(done.stdout)
    row = rows[0] if isinstance(rows, list) else rows
    return json.dumps({key: row.get(key) for key in ("conn_type", "host", "login", "password", "port", "schema",
                                                    "extra")})
