"""Ranking over the full catalogue and its metrics: shared by training's validation, evaluate and publish."""
