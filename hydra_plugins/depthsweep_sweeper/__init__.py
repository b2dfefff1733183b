"""depthsweep's Hydra sweeper (Hydra loads plugins from the hydra_plugins namespace only)."""
