"""The pipeline's steps: landing contract and ingest into `raw`, the dbt build and its record, retract,
the pipeline lock, and `steps` (what `chat-analytics run` and the DAG's tasks both call)."""
