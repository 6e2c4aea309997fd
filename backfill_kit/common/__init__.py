"""The bottom layer: the status vocabulary, text made safe to show, bounds on dates, how
paths and dates given as text are read, the user's cache folder and the plain data it holds,
files written whole or not at all. Imports nothing else of backfill_kit but `errors`."""
