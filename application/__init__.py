"""Use cases over the one event log: commands in, recorded facts out."""
