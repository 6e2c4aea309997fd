"""A plan as an Airflow DAG file, and what reads an Airflow run back.

`document` is the DAG file's data (the plan's steps, the skip settings, the pools) and its
checks, with no Airflow import: the export writes it, the DAG file reads it at parse. `dag`
builds the DAG from it, `tasks` is what each task runs, `audit` the scheduled coverage audit,
`rest` reads a run's task states through Airflow's REST API. Airflow itself is imported only
by `dag`, `tasks` and `audit`, inside Airflow.
"""
