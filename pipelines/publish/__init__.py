"""Publish stage: top-K recommendations written back to the warehouse."""
