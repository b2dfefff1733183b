"""Transfer a zoo model to other classes with few labels (depthsweep.apps.transfer):

    python -m experiments.transfer transfer.source=RUN_DIR_OR_CKPT transfer.freeze=all
    python -m experiments.transfer -m transfer.source=RUN_DIR_OR_CKPT \
        transfer.labels_per_class=10,50,200 transfer.freeze=all,last_stage,none,scratch

Each run records its result in its run directory's run.json (skipped once done, as a training run
is); a sweep also writes transfer.csv and transfer.png/.svg into its sweep directory. Options:
conf/transfer.yaml, conf/transfer/.
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from depthsweep.apps.transfer import transfer
from depthsweep.errors import USER_ERROR, UserError
from depthsweep.training.config import home_expanded
from depthsweep.training.overrides import check_added_keys, command_line_error
from experiments.exits import setup_error, unexpected_error


@hydra.main(version_base="1.3", config_path="../conf", config_name="transfer")
def main(cfg: DictConfig) -> dict:
    """Exit codes as experiments.run's: 2 a setup error (a source that is missing, no
    checkpoint, or unreadable; a bad option, or a +KEY that nothing reads: one line, nothing left
    behind), 1 a failure (said at once; a run that started records it in its run.json)."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        check_added_keys(cfg, hc.overrides.task)
        return transfer(cfg, run_dir)
    except UserError as e:
        setup_error(e, [run_dir], sweep=hc.mode == RunMode.MULTIRUN)
    except Exception as e:
        unexpected_error(e, [run_dir])


if __name__ == "__main__":
    sys.argv = home_expanded(sys.argv)
    refused = command_line_error(sys.argv[1:], "transfer")  # one line, before Hydra's several
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        raise SystemExit(USER_ERROR)
    main()
