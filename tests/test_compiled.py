"""The fast paths (torch.compile, channels-last) give the eager path's training curve on the
same seed, for the parts that run on a CPU."""

from __future__ import annotations

import pandas as pd

from depthsweep.train import compose_config, train


def curve(overrides: list[str], run_dir) -> pd.DataFrame:
    assert train(compose_config(overrides), run_dir) == "done"
    return pd.read_csv(run_dir / "metrics.csv").dropna(subset=["train_loss"]).set_index("step")


def test_fast_paths_match_eager(fake_cifar, tmp_path):
    common = [
        "depth=8",
        f"data.root={fake_cifar}",
        "data.batch_size=20",
        "schedule.iterations=20",
        "trainer.log_every_n_steps=2",
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
        "trainer.check_val_every_n_epoch=100",  # no eval: its shapes would recompile
    ]
    eager = curve(common, tmp_path / "eager")
    # aot_eager traces forward and backward through dynamo and AOTAutograd like inductor does,
    # without code generation, which takes minutes on a CPU.
    compiled = curve([*common, "compile.enabled=true", "compile.backend=aot_eager"], tmp_path / "c")
    channels_last = curve([*common, "channels_last=true"], tmp_path / "cl")
    assert len(eager) == 10
    # Channels-last convolutions sum in another order: float noise that grows over 20 steps
    # (~4e-4 here); a real fault (wrong layout, lost augmentation) moves the loss by far more.
    for fast, rtol in ((compiled, 1e-4), (channels_last, 2e-3)):
        pd.testing.assert_series_equal(eager["train_loss"], fast["train_loss"], rtol=rtol)
        pd.testing.assert_series_equal(eager["train_error"], fast["train_error"], rtol=rtol)
