"""What a run prints, in one place: our lines go through `logging` (so Hydra's run.log holds what
the console showed), and the libraries' lines that say nothing about the run are dropped here."""

from __future__ import annotations

import logging
import warnings

# Lightning's messages that are advice or noise for this harness, by a fragment of their text:
NOISE = (
    "litlogger",  # an advertisement for a logging service
    "`weights_only` was not set",  # our own checkpoints, loaded by us
    "is smaller than the logging interval",  # tiny smoke runs log at most every iterations/10
    # Per-run notices: the run's own start line names its device and its end line its length.
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "CUDA_VISIBLE_DEVICES",
    "`Trainer.fit` stopped",
    "Automatic Mixed Precision (AMP)",  # ... and its precision (a transfer run's: its run.json)
    "Received SIGTERM",  # the run's own line says it was interrupted, and by what
    # torch's weights-only reader on a file that is no checkpoint: the one line says what it is
    "Detected pickle protocol",
    # Resuming: the run's start line says "resuming from <checkpoint> (iteration N)".
    "Restoring states from the checkpoint path",
    "Restored all states from the checkpoint",
)


# The loggers they come through (a filter applies where a record is made, not where it propagates).
NOISY_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "pytorch_lightning.trainer.connectors.checkpoint_connector",
    "pytorch_lightning.accelerators.cuda",
    "pytorch_lightning.trainer.connectors.signal_connector",
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in NOISE)


def quiet_libraries() -> None:
    """Drop the libraries' noise (idempotent)."""
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    for fragment in NOISE:
        warnings.filterwarnings("ignore", message=f".*{fragment}")
    # Lightning's use of an API this torch deprecates: nothing a user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning, module="pytorch_lightning")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")
