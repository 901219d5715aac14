"""A local S3-compatible server (moto's) as the DVC remote of workers that share no working tree:
what the cluster's test and bench use (``moto[server]`` is a test dependency)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Remote:
    endpoint: str
    url: str  # s3://bucket/prefix

    def environment(self) -> dict[str, str]:
        """What a worker needs to use it as its DVC remote (pipelines/registry/transfer.py)."""
        return {**CREDENTIALS, "RETRAIN_DVC_REMOTE_URL": self.url, "RETRAIN_DVC_REMOTE_ENDPOINT": self.endpoint}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def s3_server(log_dir: Path) -> Iterator[S3Remote]:
    """Starts moto's S3 server, creates a bucket, yields the remote; stops the server after."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log_dir / "moto.log", "wb") as log:
        server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                              region_name=CREDENTIALS["AWS_DEFAULT_REGION"])
        bucket = f"dvc-{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                break
            except Exception:  # noqa: BLE001 - the server is still starting
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        yield S3Remote(endpoint=endpoint, url=f"s3://{bucket}/nights")
    finally:
        server.terminate()
        server.wait(timeout=10)
