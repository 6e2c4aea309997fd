"""Other engines that run a plan: its stages, caps and guarantees handed to a scheduler a team
already operates (Apache Airflow, Cloud Composer on GCP)."""
