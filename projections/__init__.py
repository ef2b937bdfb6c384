"""Read models: one module per projection, each rebuilt from the log at will."""
