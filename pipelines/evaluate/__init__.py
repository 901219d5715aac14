"""Evaluate stage: ranking, metrics, baselines, bootstrap analysis, the promotion gate and the report."""
