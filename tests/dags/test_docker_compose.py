"""The production-shaped deployment: docker-compose.yml, Dockerfile and docker/.env.example agree.

The structure checks always run (PyYAML); `docker-compose config` runs too where the binary exists.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess

import pytest
import yaml

from .conftest import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / "docker" / ".env.example"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker", "airflow-worker-gpu"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # resolves the anchors and `<<` merges


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
             if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def secret_names() -> set[str]:
    """The variables .env.example leaves blank: the secrets."""
    return {key for key, value in env_example().items() if not value}


def test_services_and_images(compose):
    services = compose["services"]
    assert set(services) == AIRFLOW_SERVICES | {"postgres", "redis"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["build"]["dockerfile"] == "Dockerfile", name
        assert service["build"]["context"] == ".", name
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["RETRAIN_PROJECT_DIR"] == "/opt/retrain", name
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/retrain/dags", name
        assert env["AIRFLOW_CONN_WAREHOUSE"].startswith("${AIRFLOW_CONN_WAREHOUSE:?"), name
        assert "postgres:5432" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert env["AIRFLOW__CELERY__BROKER_URL"].endswith("@redis:6379/0"), name
        assert ".:/opt/retrain" in service["volumes"], name


def test_commands(compose):
    services = compose["services"]
    expected = {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer"}
    for name, command in expected.items():
        assert services[name]["command"] == command
    init_env = services["airflow-init"]["environment"]
    assert init_env["_AIRFLOW_DB_MIGRATE"] == "true" and init_env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert init_env["_AIRFLOW_WWW_USER_PASSWORD"].startswith("${AIRFLOW_ADMIN_PASSWORD:?")


def test_init_creates_the_registry_and_every_pool_the_dag_uses(compose, retrain_dag):
    init = compose["services"]["airflow-init"]
    script = init["command"][-1]
    created = set(re.findall(r"airflow pools set (\w+) ", script))
    used = {task.pool for task in retrain_dag.tasks} - {"default_pool"}
    assert used == {"gpu"} and used <= created
    assert init["environment"]["GPU_POOL_SLOTS"] == "${GPU_POOL_SLOTS:-1}" and "GPU_POOL_SLOTS" in env_example()
    assert script.startswith("cd /opt/retrain && retrain registry init && ")
    assert script.endswith("&& airflow version")  # each step first: a failure stops the init


def test_every_connection_the_operator_hands_over_is_set_once(compose, retrain_dag):
    import sys

    operator_module = sys.modules[type(retrain_dag.get_task("extract")).__module__]  # dags/stage_operator.py
    connections = operator_module.CONNECTIONS
    env = compose["services"]["airflow-worker"]["environment"]
    assert set(connections.values()) <= set(env)
    assert not {"RETRAIN_WAREHOUSE_URL", "RETRAIN_REGISTRY_URL"} & set(env)  # one setting per connection
    registry = env["AIRFLOW_CONN_REGISTRY"]
    assert registry.startswith("postgres://") and registry.endswith("@postgres:5432/${RETRAIN_REGISTRY_DB:-registry}")
    assert env_example()["RETRAIN_REGISTRY_DB"] == "registry"


def test_the_celery_result_backend_names_an_installed_driver(compose):
    import importlib.util

    backend = compose["services"]["airflow-worker"]["environment"]["AIRFLOW__CELERY__RESULT_BACKEND"]
    driver = re.match(r"db\+postgresql\+(\w+)://", backend)
    assert driver is not None, backend  # a bare postgresql:// means psycopg 3 to SQLAlchemy 2.1
    assert importlib.util.find_spec(driver[1]) is not None


def test_workers_split_default_and_gpu_queues(compose):
    default, gpu = compose["services"]["airflow-worker"], compose["services"]["airflow-worker-gpu"]
    assert default["command"].split()[:2] == ["celery", "worker"]
    assert re.search(r"--queues default\b", default["command"]) and "gpu" not in default["command"]
    assert gpu["command"].split()[:2] == ["celery", "worker"]
    assert re.search(r"--queues gpu\b", gpu["command"]) and "--concurrency 1" in gpu["command"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "deploy" not in default
    assert gpu["build"]["args"]["TORCH_VARIANT"] != "cpu" and default["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert gpu["image"] != default["image"]


def test_secrets_come_only_from_the_environment():
    text = COMPOSE_FILE.read_text()
    secrets = secret_names()
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_CONN_WAREHOUSE"} <= secrets
    references = re.findall(r"(?<!\$)\$\{(\w+)(:?[-?])?", text)  # $${X} is a container-side variable
    referenced = {name for name, _ in references}
    assert secrets <= referenced, f"unused secrets in .env.example: {sorted(secrets - referenced)}"
    for name, operator in references:
        if name in secrets:
            assert operator == ":?", f"${{{name}}} must be required (${{{name}:?...}}), not defaulted"
    assert referenced <= set(env_example()), f"not documented in .env.example: {sorted(referenced - set(env_example()))}"


def test_dockerfile_builds_on_the_pinned_airflow_image():
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))
    assert "FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}" in text
    assert args["AIRFLOW_VERSION"] == importlib.metadata.version("apache-airflow")
    assert args["PYTHON_VERSION"] == "3.11" and args["TORCH_VARIANT"] == "cpu"
    assert "requirements.lock" in text and "pip install --no-cache-dir --no-deps -e ." in text
    # The image installs torch from the PyTorch index at this version, so it must match the lock.
    lock = (PROJECT_ROOT / "requirements.lock").read_text()
    assert re.search(rf"^torch=={re.escape(args['TORCH_VERSION'])}(\+\w+)?$", lock, flags=re.M)


def compose_binary() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


def test_docker_compose_config(tmp_path):
    binary = compose_binary()
    if binary is None:
        pytest.skip("no docker-compose / docker compose here; the YAML structure tests above still ran")
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")  # a developer's ./.env must not leak into this check
    command = [*binary, "--env-file", str(empty_env), "-f", str(COMPOSE_FILE), "config", "-q"]
    base_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    filled = {name: "dummy" for name in secret_names()}
    ok = subprocess.run(command, cwd=PROJECT_ROOT, env={**base_env, **filled}, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(command, cwd=PROJECT_ROOT, env=base_env, capture_output=True, text=True)
    assert missing.returncode != 0 and "set " in missing.stderr  # the ${VAR:?set VAR} message
