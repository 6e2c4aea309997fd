"""Running a plan: the runner and its executor, the journal that survives any crash, table
locks, the watchdog that leaves no orphan, live progress, and estimates from earlier runs."""
