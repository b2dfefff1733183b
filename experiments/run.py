"""Train one run, or a sweep with -m: python -m experiments.run -m depth=20,56 arch=plain,resnet"""

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from depthsweep.train import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> str:
    hc = HydraConfig.get()
    status = train(cfg, hc.runtime.output_dir)
    if status == "failed" and hc.mode == RunMode.RUN:  # in a sweep, the other runs go on
        raise SystemExit(1)
    return status


if __name__ == "__main__":
    main()
