"""Browser code embedded in the reports (see README.md here): data files, no Python."""
