"""Alembic revisions of the registry schema, applied in order by ``pipelines.registry.migrations.upgrade``."""
