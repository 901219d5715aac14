"""Promote stage: the model registry (versions, champion alias, artifact store, migrations) and DVC snapshots."""
