"""The services of docker-compose.yml as local processes (no Docker)."""
