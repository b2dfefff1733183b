"""One training run: data, the Lightning module, its callbacks and schedule, built from config."""
