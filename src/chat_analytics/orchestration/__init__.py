"""Airflow: the DAG's tasks and dbt task group, the warehouse pool, alerts, a local standalone Airflow."""
