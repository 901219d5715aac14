"""Profiles stage: leave-last-out split, user sequences, user and item texts."""
