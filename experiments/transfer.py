"""Transfer a zoo model to other classes with few labels (depthsweep.apps.transfer):

    python -m experiments.transfer transfer.source=RUN_DIR_OR_CKPT transfer.freeze=all
    python -m experiments.transfer -m transfer.source=RUN_DIR_OR_CKPT \
        transfer.labels_per_class=10,50,200 transfer.freeze=all,last_stage,none,scratch

Each run records its result in its run directory's run.json (skipped once done, as a training run
is); a sweep also writes transfer.csv and transfer.png/.svg into its sweep directory. Options:
conf/transfer.yaml, conf/transfer/.
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from depthsweep.apps.transfer import transfer


@hydra.main(version_base="1.3", config_path="../conf", config_name="transfer")
def main(cfg: DictConfig) -> dict:
    return transfer(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
