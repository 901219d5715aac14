"""Domain code of the nightly retraining platform.

Nothing here imports Airflow: every module is plain Python, testable on small data, and called
by the entry points in ``tasks/``.
"""
