"""depthsweep: plain vs residual CIFAR-10 nets across depth (He et al. 2016, Fig. 6)."""

from pathlib import Path

# The Hydra config tree, conf/ beside src/: what experiments.run composes, and where the
# analysis reads what each arch's file sets (runs.sweep).
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
