# The one image every Airflow service runs: the official Airflow image + this project.
#   docker-compose build                     # CPU torch (api-server, scheduler, default worker)
#   TORCH_VARIANT=cu128 builds the `gpu` worker image (see docker-compose.yml).
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG AIRFLOW_VERSION
# The PyTorch wheel index variant: cpu, or a CUDA build such as cu128 for the gpu worker.
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0

USER airflow
WORKDIR /opt/retrain

# Dependencies first (cached layer). torch comes from the PyTorch index for the chosen variant,
# so its pins (and CUDA's nvidia-* / triton wheels) are dropped from the lock here, as is the
# project itself (installed below); Airflow stays pinned to the base image's version.
COPY --chown=airflow:0 requirements.lock ./
RUN pip install --no-cache-dir --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        "torch==${TORCH_VERSION}" \
    && grep -viE '^(-e |(torch|triton|nvidia-[a-z0-9-]+|nightly-retrain)([=<>~!; @]|$))' requirements.lock > /tmp/requirements.txt \
    && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements.txt

# The project itself, editable: docker-compose mounts the working tree over /opt/retrain, and
# `tasks` / `pipelines` then resolve to the mounted code.
COPY --chown=airflow:0 pyproject.toml README.m[d] params.yaml dvc.yaml ./
COPY --chown=airflow:0 tasks ./tasks
COPY --chown=airflow:0 pipelines ./pipelines
COPY --chown=airflow:0 dags ./dags
RUN pip install --no-cache-dir --no-deps -e .

ENV RETRAIN_PROJECT_DIR=/opt/retrain \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/retrain/dags \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
