"""The bottom layer: the status vocabulary, text made safe to show, bounds on dates, how
paths and dates given as text are read. Imports nothing else of backfill_kit but `errors`."""
