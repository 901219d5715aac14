"""The name a worker records as a task's hostname (Airflow's ``[core] hostname_callable``).

Several workers on one machine (``deploy/local/cluster.py``) share its host name; each sets
``RETRAIN_WORKER_NAME`` so the UI and the REST API say which of them ran a task.
"""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("RETRAIN_WORKER_NAME") or socket.getfqdn()
