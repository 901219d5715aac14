"""Deployment helpers: deploy/local starts the production topology on one machine."""
