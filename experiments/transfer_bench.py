"""Time an epoch of transfer.freeze=all on cached features against an epoch of freeze=none:

    python -m experiments.transfer_bench RUN_DIR_OR_CKPT [--data-root DIR]
        [--labels-per-class N] [--batch-size B] [--epochs E]

Both train on the same labelled images of the default target classes, in batches of B, through
the app's own code: freeze=all's train_head on the cached features, freeze=none's Lightning
fine-tuning (fine_tune), on the CPU, timed by training's step clock. An epoch's time is the median
of E epochs after a first one left out (start-up); computing the features, freeze=all's one-off
cost, is reported apart.
Prints the three times and the speed-up.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from depthsweep.apps import transfer as tr
from depthsweep.apps import zoo
from depthsweep.errors import USER_ERROR, UserError, check_count
from depthsweep.training.clocks import StepClock
from depthsweep.training.config import CONF_DIR
from depthsweep.training.console import quiet_libraries

# The app's checks name these flags, not the transfer.* keys they set
FLAGS = {
    "labels_per_class": "--labels-per-class",
    "batch_size": "--batch-size",
    "data_root": "--data-root",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="a zoo model: run directory or checkpoint file")
    parser.add_argument("--data-root", help="CIFAR-10, if not at the source's data.root")
    parser.add_argument("--labels-per-class", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    quiet_libraries()
    overrides = [
        "trainer=cpu",
        "trainer.enable_progress_bar=false",
        f"transfer.labels_per_class={args.labels_per_class}",
        f"transfer.batch_size={args.batch_size}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="bench"):
        cfg = compose("transfer", overrides)
    # Set, not overridden: Hydra's override grammar would need paths with = or , quoted.
    cfg.transfer.source, cfg.transfer.data_root = args.source, args.data_root
    try:
        check_count("--epochs", args.epochs, minimum=1)  # the median of none
        source = zoo.load(args.source)
        data = tr.target_data(cfg, source, FLAGS)
    except UserError as e:  # no such source, no checkpoint, no data: one line, as the zoo's
        print(f"error: {e}", file=sys.stderr)
        return USER_ERROR
    n, k = len(data.data.y_train), len(data.names)
    steps = max(1, n // args.batch_size)
    in_features = source.model.get_submodule(tr.HEAD).in_features

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        feats, _, _ = tr.cached_features(Path(cache), source, "bench", data, "cpu")
        features_s = time.perf_counter() - start

    def schedule(iterations: int):
        return OmegaConf.merge(cfg.schedule, {"iterations": iterations})

    # One step clock for both: a tick per epoch of the head's loop, per step of fine-tuning.
    cpu = torch.device("cpu")
    epochs = range(1, 2 + args.epochs)  # the first one left out: start-up
    head_clock = StepClock(at=epochs)
    head_clock.start(cpu)
    for _ in epochs:
        head = tr.new_head(in_features, k, cfg.seed)
        tr.train_head(
            head, feats["train"].__getitem__, feats["train_labels"], schedule(steps),
            args.batch_size, cfg.seed,
        )  # fmt: skip
        head_clock.tick(cpu)
    frozen = median(head_clock.seconds(e - 1, e) for e in epochs[1:])
    model = copy.deepcopy(source.model)
    setattr(model, tr.HEAD, tr.new_head(in_features, k, cfg.seed))
    clock = StepClock(at=[e * steps for e in epochs])
    everything = OmegaConf.merge(cfg, {"schedule": schedule(steps * len(epochs))})
    tr.fine_tune(model, "none", data, everything, callbacks=[clock])
    fine = median(clock.seconds((e - 1) * steps, e * steps) for e in epochs[1:])
    print(f"{n} labelled images ({k} classes), {steps} steps of {args.batch_size} an epoch, CPU")
    print(f"features of labelled + test images, once: {features_s:.3f} s")
    print(f"freeze=all, an epoch on cached features: {frozen * 1e3:.2f} ms")
    print(f"freeze=none, an epoch of fine-tuning:    {fine * 1e3:.1f} ms")
    print(f"speed-up: {fine / frozen:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
