"""Search-space conversions for the search libraries that need no Ray (Optuna)."""
