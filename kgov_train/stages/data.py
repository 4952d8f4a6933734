"""data stage (placeholder until data_prep lands)."""
