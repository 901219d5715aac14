"""Entry points, one per stage: parse arguments and params, call ``pipelines``, write outputs.

Both runners call these: ``dvc repro`` (commands in ``dvc.yaml``) and the Airflow DAG.
"""
