"""The YAML contract: schema, loading with line-accurate errors, checks, the search space. No ray."""
