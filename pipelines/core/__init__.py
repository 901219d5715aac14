"""What every stage shares: atomic file output and hashing, the canonical warehouse schema, warehouse connections."""
