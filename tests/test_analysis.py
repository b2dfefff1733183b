"""The analysis layer on synthetic sweeps (see fakesweep.py for the closed-form curves)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from fakesweep import degradation_sweep, write_run, write_sweep
from omegaconf import OmegaConf

from depthsweep.analysis import plots, report
from depthsweep.analysis import summaries as analysis
from depthsweep.runs.metrics import within_run_se
from depthsweep.runs.sweep import NoRunsError
from experiments.analyze import main

OUTPUTS = ["summary.csv", "by_depth.csv", "summary.md", "verdict.json"]
OUTPUTS += ["figure6.png", "figure6.svg"]
OUTPUTS += ["error_vs_depth.png", "error_vs_depth.svg"]


def summary_of(sweep):
    return analysis.summarize(*analysis.load_sweep(sweep))


def row(summary, arch, depth, seed=0):
    (match,) = summary.index[
        (summary.arch == arch) & (summary.depth == depth) & (summary.seed == seed)
    ]
    return summary.loc[match]


def test_summary_values_and_columns(tmp_path):
    summary = summary_of(degradation_sweep(tmp_path))
    assert list(summary.columns[:10]) == [
        *["arch", "depth", "seed", "params", "iterations", "status"],
        *["final_train_error", "final_test_error", "best_test_error", "test_error_at_best_val"],
    ]
    assert list(summary.columns[10:12]) == ["final_train_error_se", "final_test_error_se"]
    assert list(summary.columns[12:16]) == ["macs", "wall_time_s", "first_step_s", "run_dir"]
    assert list(summary.columns[17:]) == [
        *["train_images", "classes", "test_images", "test_md5", "test_official"],
        *["warmup_end", "warmup_end_reason"],
        "variant",  # the arch, and the options that tell its runs apart (none here)
    ]
    assert (summary.variant == summary.arch).all()
    assert list(zip(summary.arch, summary.depth, summary.seed, strict=True)) == [
        ("plain", 20, 0), ("plain", 20, 1), ("plain", 56, 0), ("plain", 56, 1),
        ("resnet", 20, 0), ("resnet", 20, 1), ("resnet", 56, 0), ("resnet", 56, 1),
    ]  # fmt: skip
    r = row(summary, "plain", 56, seed=1)
    # train 7.0: the 11 windows at steps 950, 955, ..., 1000 hold 8.5 down to 7.0.
    assert r.final_train_error == pytest.approx(7.75)
    assert r.final_train_error_se == pytest.approx(0)  # a straight line: no noise about it
    assert r.final_test_error_se == pytest.approx(100 * math.sqrt(0.14 * 0.86 / 10_000))
    assert r.final_test_error == pytest.approx(14.0)
    assert r.best_test_error == pytest.approx(13.5)
    assert r.iterations == 1000
    assert r.wall_time_s == pytest.approx(10.0)
    assert r.first_step_s == pytest.approx(0.25)  # from run.json
    assert (r.params, r.macs, r.status) == (56000, 2800000, "done")
    assert r.run_dir == "arch=plain,depth=56,seed=1"


def test_final_train_error_falls_back_to_last_window(tmp_path):
    # Windows every 300 steps: the last one (step 900) is before 0.99 * 1000.
    write_sweep(tmp_path, [{"arch": "plain", "depth": 20, "train": 4.0, "log_every": 300}])
    r = row(summary_of(tmp_path), "plain", 20)
    assert r.iterations == 1000  # reached through the test-error rows
    assert r.final_train_error == pytest.approx(4.0 + 30 * 0.1)


def test_running_failed_and_missing_macs(tmp_path):
    write_sweep(
        tmp_path,
        [
            {"arch": "plain", "depth": 20, "iters": 400, "target": 1000, "status": "running"},
            {
                "arch": "plain",
                "depth": 56,
                "status": "failed",
                "error": "CUDA OOM",
                "metrics": False,
            },
            {"arch": "resnet", "depth": 20, "macs": None},
        ],
    )
    summary = summary_of(tmp_path)
    running, failed, resnet = (
        row(summary, *key) for key in [("plain", 20), ("plain", 56), ("resnet", 20)]
    )
    assert (running.status, running.iterations) == ("running", 400)
    assert failed.status == "failed" and failed.error == "CUDA OOM"
    assert pd.isna(failed.iterations) and pd.isna(failed.wall_time_s)
    assert all(math.isnan(failed[c]) for c in analysis.ERROR_COLUMNS)
    assert pd.isna(resnet.macs) and resnet.params == 20000


def test_aggregate_excludes_failed_runs(tmp_path):
    degradation_sweep(tmp_path)
    write_run(tmp_path, "plain", 20, seed=2, train=50.0, status="failed", error="diverged")
    table = analysis.aggregate(summary_of(tmp_path)).set_index(["arch", "depth"])
    plain20 = table.loc[("plain", 20)]
    assert plain20.n == 2
    assert plain20.final_train_error_mean == pytest.approx(2.25)
    assert plain20.final_train_error_std == pytest.approx(math.sqrt(0.5))
    assert plain20.best_test_error_mean == pytest.approx(9.0)
    assert table.loc[("resnet", 56)].final_test_error_std == 0


def test_the_console_table_fits_100_columns_and_rounds(tmp_path):
    degradation_sweep(tmp_path)
    write_run(tmp_path, "plain", 110, status="failed", error="diverged", metrics=False)
    write_run(tmp_path, "resnet", 110, train=1 / 3)  # 1.0833...: float noise must not show
    lines = analysis.console_table(summary_of(tmp_path)).splitlines()
    assert max(map(len, lines)) < 100 and len(lines) == 11
    assert lines[0].split() == ["run", "depth", "seed", "status", "iters", "train", "%", "test"] + [
        "%",
        "time",
        "s",
    ]
    failed = next(x for x in lines if " failed " in x)
    assert failed.split()[-3:] == ["—", "—", "—"]
    resnet110 = next(x for x in lines if x.split()[:2] == ["resnet", "110"])
    assert resnet110.split()[5:] == ["1.08", "10.00", "10"]
    assert not any(s in "".join(lines) for s in ("NaN", "None", "<NA>"))


def test_summary_markdown(tmp_path):
    degradation_sweep(tmp_path)
    write_run(tmp_path, "resnet", 32)
    write_run(tmp_path, "plain", 110, status="failed", error="NaN loss\nat step 12", metrics=False)
    md = analysis.to_markdown(summary_of(tmp_path))
    lines = md.splitlines()
    assert (
        "| plain | 20 | 2 | 20,000 | 1.0M | 2.25 ± 0.50 | 9.50 ± 0.50 | 9.00 | official "
        "| not comparable | not comparable |" in lines
    )  # ± the SE: seeds 1.75 and 2.75, SE 0.5; the paper's numbers are of 64,000 iterations
    resnet20 = "| resnet | 20 | 2 | 20,000 | 1.0M | 3.75 ± 0.00 | 8.75 ± 0.25 | 8.25 |"
    assert f"{resnet20} official | — | not comparable |" in lines
    # One seed: its own noise, binomial for the test error (10% of 10,000: 0.30 points)
    resnet32 = "| resnet | 32 | 1 | 32,000 | 1.6M | 2.75 ± 0.00 | 10.00 ± 0.30 | 9.50 | official"
    assert f"{resnet32} | — | not comparable |" in lines
    assert not any(line.startswith("| plain | 110 |") for line in lines)
    assert "- arch=plain,depth=110,seed=0: NaN loss at step 12" in lines
    got = analysis.decide(summary_of(tmp_path))  # the verdict now counts resnet-32
    assert lines[-1] == got.sentence and "resnet 20: 3.75 ± 0.00 (2), 32: 2.75" in got.sentence


def test_paper_test_error_only_beside_the_official_test_set(tmp_path):
    exact_1000 = {"test_images": 1000, "test_md5": "0123456789abcdef", "test_official": False}
    full = {"iters": 64_000, "log_every": 640, "epoch_len": 6400}  # the paper's schedule
    write_run(tmp_path, "resnet", 20, **full, **exact_1000)
    write_run(tmp_path, "resnet", 56, **full)  # official
    write_run(tmp_path, "resnet", 110, **full, test_images=10_000, test_md5="f" * 32,
              test_official=False)  # fmt: skip
    summary = summary_of(tmp_path)
    assert list(summary.test_images) == [1000, 10_000, 10_000]
    assert list(summary.test_official) == [False, True, False]
    lines = analysis.to_markdown(summary).splitlines()
    row20, row56, row110 = (
        next(x for x in lines if x.startswith(f"| resnet | {d} |")) for d in (20, 56, 110)
    )
    assert row20.endswith("| 1,000 images, md5 01234567… (not official) | — | not comparable |")
    assert row56.endswith("| official | — | 6.97 |")
    assert row110.endswith("| 10,000 images, md5 ffffffff… (not official) | — | not comparable |")
    assert "test error at best val" not in "\n".join(lines)  # no run has a validation split


def test_paper_numbers_only_beside_runs_of_the_papers_schedule(tmp_path):
    write_run(tmp_path, "plain", 20, iters=64_000, log_every=640, epoch_len=6400)
    write_run(tmp_path, "plain", 56)  # 1,000 iterations
    lines = analysis.to_markdown(summary_of(tmp_path)).splitlines()
    row20, row56 = (next(x for x in lines if x.startswith(f"| plain | {d} |")) for d in (20, 56))
    assert row20.endswith("| official | ≈1.4 | ≈9.7 |")
    assert row56.endswith("| official | not comparable | not comparable |")


def test_within_run_se_is_the_window_noise_of_the_final_phase():
    """Windows with Gaussian noise of std 0.4 about a declining line, at the final lr: the SE
    of a mean of m windows is 0.4 / sqrt(m). Earlier windows, at another lr, are left out however
    noisy they are."""
    rng = np.random.default_rng(0)
    steps = np.arange(50, 200_001, 50)
    errors = 30 - 1e-4 * steps + rng.normal(0, 0.4, len(steps))
    errors[steps <= 100_000] += rng.normal(0, 20, (steps <= 100_000).sum())
    train = pd.DataFrame({"step": steps, "train_error": errors})
    lr = pd.DataFrame({"step": [50, 100_000, 100_050], "lr": [0.1, 0.1, 0.001]})
    assert within_run_se(train, lr, averaged=16) == pytest.approx(0.1, rel=0.05)
    assert math.isnan(within_run_se(train.tail(2), lr, averaged=2))


def test_test_error_at_best_val_is_chosen_on_validation(tmp_path):
    run_dir = write_run(tmp_path, "resnet", 20)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    evals = metrics.index[metrics.test_error.notna()]
    # validation is best at the third evaluation, whose test error is not the best test error
    metrics.loc[evals, "val_error"] = [30.0, 20.0, 5.0] + [25.0] * (len(evals) - 3)
    metrics.to_csv(run_dir / "metrics.csv", index=False)
    r = row(summary_of(tmp_path), "resnet", 20)
    assert r.test_error_at_best_val == metrics.loc[evals[2], "test_error"]
    assert r.test_error_at_best_val > r.best_test_error
    assert "test error at best val" in analysis.to_markdown(summary_of(tmp_path))


def test_analyze_writes_identical_files_twice(tmp_path):
    degradation_sweep(tmp_path)
    first = report.analyze(tmp_path)
    written = {name: (tmp_path / name).read_bytes() for name in OUTPUTS}
    second = report.analyze(tmp_path)
    pd.testing.assert_frame_equal(first, second)
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == written[name], name
    assert written["figure6.png"].startswith(b"\x89PNG")
    assert b"<svg" in written["figure6.svg"]
    assert pd.read_csv(tmp_path / "summary.csv").shape == (8, len(analysis.SUMMARY_COLUMNS) + 1)
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind
    verdict = json.loads(written["verdict.json"])  # the verdict's numbers, as data
    assert verdict["sentence"] == analysis.verdict(first)
    assert [(p["arch"], p["depth"], p["n"]) for p in verdict["points"]] == [
        ("plain", 20, 2), ("plain", 56, 2), ("resnet", 20, 2), ("resnet", 56, 2)
    ]  # fmt: skip
    assert verdict["parts"][0]["state"] == "untested" and verdict["parts"][0]["estimate"] is None


def test_by_depth_csv_holds_the_means_of_the_finished_runs_alone(tmp_path):
    """by_depth.csv: per arch and depth, the mean and SD over its finished seeds of what
    summary.csv holds per run; a failed run and an infinite error are left out."""
    degradation_sweep(tmp_path)
    write_run(tmp_path, "plain", 20, seed=2, train=50.0, status="failed", error="diverged")
    write_run(tmp_path, "resnet", 56, seed=2, train=math.inf)
    report.analyze(tmp_path)
    runs = pd.read_csv(tmp_path / "summary.csv")
    table = pd.read_csv(tmp_path / "by_depth.csv")
    assert list(zip(table.arch, table.depth, table.n, strict=True)) == [
        ("plain", 20, 2), ("plain", 56, 2), ("resnet", 20, 2), ("resnet", 56, 2)
    ]  # fmt: skip
    finite = runs[(runs.seed < 2)]  # the degradation sweep's own two seeds
    for (arch, depth), seeds in finite.groupby(["arch", "depth"]):
        (r,) = table[(table.arch == arch) & (table.depth == depth)].itertuples()
        for column in ("final_train_error", "final_test_error", "best_test_error"):
            assert getattr(r, f"{column}_mean") == pytest.approx(seeds[column].mean())
            assert getattr(r, f"{column}_std") == pytest.approx(seeds[column].std())
    assert row(summary_of(tmp_path), "resnet", 56, seed=2).final_train_error == math.inf


def test_unreadable_files_warn_and_are_skipped(tmp_path):
    degradation_sweep(tmp_path)
    bad_csv = tmp_path / "arch=plain,depth=20,seed=1" / "metrics.csv"
    bad_csv.write_text("step,train_error\n5,3.0\n10,2.0,oops,7\n")
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / ".ipynb_checkpoints").mkdir()  # hidden: not a run, not worth a warning
    (tmp_path / "broken-json").mkdir()
    (tmp_path / "broken-json" / "run.json").write_text('{"arch": "plain", "dep')
    with pytest.warns(UserWarning) as record:
        summary = report.analyze(tmp_path)
    messages = "\n".join(str(w.message) for w in record)
    assert str(bad_csv) in messages
    assert str(tmp_path / "not-a-run" / "run.json") in messages
    assert str(tmp_path / "broken-json" / "run.json") in messages
    assert ".ipynb_checkpoints" not in messages and len(record) == 3
    assert len(summary) == 8
    r = row(summary, "plain", 20, seed=1)
    assert r.status == "done" and math.isnan(r.final_train_error) and pd.isna(r.iterations)
    assert row(summary, "plain", 20, seed=0).final_train_error == pytest.approx(1.75)
    assert all((tmp_path / name).exists() for name in OUTPUTS)


@pytest.mark.parametrize("make", ["missing", "empty", "only-multirun-yaml"])
def test_no_runs_raises_and_cli_exits_2(tmp_path, capsys, make):
    sweep = tmp_path / "sweep"
    if make != "missing":
        sweep.mkdir()
    if make == "only-multirun-yaml":
        (sweep / "multirun.yaml").write_text("hydra: {}\n")
    with pytest.raises(NoRunsError, match="sweep"):
        analysis.load_sweep(sweep)
    assert main([str(sweep)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(sweep) in err and "run.json" in err
    assert "Traceback" not in err


def test_a_folder_of_sweeps_is_refused_naming_them(tmp_path, capsys):
    """multirun/ (or a home directory) is no sweep: its sweeps' runs would be pooled into one
    summary, written beside them. A run directory inside a sweep is still read alone."""
    for name in ("smoke", "figure6_cpu"):
        degradation_sweep(tmp_path / "multirun" / name)
    assert main([str(tmp_path / "multirun")]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'multirun'} is no sweep directory, but holds 2 below it "
        f"({tmp_path / 'multirun' / 'figure6_cpu'}, {tmp_path / 'multirun' / 'smoke'}): name "
        f"one, e.g. python -m experiments.analyze {tmp_path / 'multirun' / 'figure6_cpu'}\n"
    )
    assert not list((tmp_path / "multirun").glob("summary*"))
    one_run = next((tmp_path / "multirun" / "smoke").glob("arch=plain,depth=20,seed=0"))
    assert len(analysis.load_sweep(one_run)[0]) == 1


def test_cli_prints_table_and_verdict(tmp_path, capsys):
    degradation_sweep(tmp_path)
    assert main([str(tmp_path), "--ylim", "0", "40"]) == 0
    *printed, where = capsys.readouterr().out.splitlines(keepends=True)
    out = "".join(printed)
    assert "| plain | 56 | 2 |" in out
    assert out.splitlines()[-1] == analysis.verdict(summary_of(tmp_path))
    assert (tmp_path / "summary.md").read_text() == out
    assert where.startswith(f"in {tmp_path.absolute()}: summary.md, ")


def test_figure6_panels_colours_and_seed_mean(tmp_path):
    degradation_sweep(tmp_path)
    write_run(tmp_path, "aaa", 56)  # other archs come after plain and resnet
    _, metrics = analysis.load_sweep(tmp_path)
    fig = plots.figure6(metrics, ylim=(0, 30))
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["plain", "resnet", "aaa"]
    assert axes[0].get_ylim() == (0, 30)
    plain = axes[0].get_lines()
    assert [line.get_linestyle() for line in plain] == ["--", "-", "--", "-"]  # 20, then 56
    # Same depth, same colour in every panel; different depths, different colours.
    assert (
        plain[2].get_color()
        == axes[1].get_lines()[2].get_color()
        == axes[2].get_lines()[0].get_color()
    )
    assert plain[0].get_color() != plain[2].get_color()
    # plain-20 test curve: mean of seeds (test 9 and 10), ending at 9.5 at step 1000.
    x, y = plain[1].get_data()
    assert x[-1] == 1000 and y[-1] == pytest.approx(9.5)
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["plain-20", "plain-56", "train", "test"]


def test_error_vs_depth(tmp_path):
    degradation_sweep(tmp_path)
    write_run(tmp_path, "resnet", 110, train=0.5)
    ax = plots.error_vs_depth(summary_of(tmp_path)).axes[0]
    assert list(ax.get_xticks()) == [20, 56, 110]
    bars = {c.get_label(): c for c in ax.containers}
    assert sorted(bars) == ["plain test", "plain train", "resnet test", "resnet train"]
    x, y = bars["resnet train"].lines[0].get_data()
    assert list(x) == [20, 56, 110] and list(y) == pytest.approx([3.75, 1.75, 1.25])
    # plain-20's two seeds (1.75, 2.75) give a bar of ± the SE of their mean, 0.5: the numbers
    # the verdict uses (aggregate's final_train_error_se).
    (low, high), *_ = (seg[:, 1] for seg in bars["plain train"].lines[2][0].get_segments())
    assert (low, high) == pytest.approx((2.25 - 0.5, 2.25 + 0.5))
    # The title says how long the runs trained, on what, and on which test set.
    assert ax.get_title().endswith("\n1,000 iterations; test set: official")
    plain_train, plain_test = bars["plain train"].lines[0], bars["plain test"].lines[0]
    assert plain_train.get_linestyle() == "--" and plain_test.get_linestyle() == "-"
    assert plain_train.get_color() != bars["resnet train"].lines[0].get_color()


def test_sweep_with_nothing_logged_yet_writes_everything(tmp_path):
    write_sweep(
        tmp_path,
        [
            {"arch": "plain", "depth": 20, "status": "failed", "error": None, "metrics": False},
            {"arch": "resnet", "depth": 20, "status": "running", "metrics": False},
        ],
    )
    (tmp_path / "arch=resnet,depth=20,seed=0" / "metrics.csv").write_text("step,train_error\n")
    summary = report.analyze(tmp_path)
    assert list(summary.status) == ["failed", "running"]
    assert summary[analysis.ERROR_COLUMNS].isna().all().all()
    md = (tmp_path / "summary.md").read_text()
    assert "- arch=plain,depth=20,seed=0: (no message)" in md
    assert "- arch=resnet,depth=20,seed=0: nothing logged yet" in md
    assert all((tmp_path / name).exists() for name in OUTPUTS)


def test_figure6_shows_curves_above_the_papers_range_by_default(tmp_path):
    """A short run's errors lie far above the paper's 0-20%: the default axis must show them."""
    write_sweep(tmp_path, [{"arch": "plain", "depth": 110, "train": 70.0, "test": 75.0}])
    _, metrics = analysis.load_sweep(tmp_path)
    low, high = plots.figure6(metrics).axes[0].get_ylim()
    top = metrics[["train_error", "test_error"]].max().max()  # 100 at the first window
    assert low == 0 and top <= high <= 1.1 * top


def test_runs_of_different_options_are_never_averaged_as_seeds(tmp_path):
    """The zero-init sweep and a re-run with another schedule.iterations, in one directory."""
    for seed, zero_init, iterations, train in [
        (0, False, 200, 50.0),
        (1, False, 200, 52.0),  # a real seed pair: averaged
        (0, True, 200, 70.0),
        (0, False, 300, 30.0),
    ]:
        run_dir = write_run(
            tmp_path / f"zi={zero_init},it={iterations}", "resnet", 20, seed=seed, train=train
        )
        cfg = OmegaConf.load(run_dir / "config.yaml")
        cfg.arch.zero_init_residual, cfg.schedule = zero_init, {"iterations": iterations}
        OmegaConf.save(cfg, run_dir / "config.yaml")
    summary = summary_of(tmp_path)
    assert analysis.options_of(summary) == ["arch.zero_init_residual", "schedule.iterations"]
    table = analysis.aggregate(summary).set_index("variant")
    assert list(table.n) == [2, 1, 1]
    plain_200 = "resnet (arch.zero_init_residual=False, schedule.iterations=200)"
    assert table.loc[plain_200, "final_train_error_mean"] == pytest.approx(51.75)
    zero = "resnet (arch.zero_init_residual=True, schedule.iterations=200)"
    assert table.loc[zero, "final_train_error_mean"] == pytest.approx(70.75)
    md = analysis.to_markdown(summary).splitlines()
    header = next(line for line in md if line.startswith("| arch |"))
    assert header.startswith("| arch | arch.zero_init_residual | schedule.iterations | depth |")
    assert "| resnet | True | 200 | 20 | 1 |" in "\n".join(md)
    panels = [ax.get_title() for ax in plots.figure6(analysis.load_sweep(tmp_path)[1]).axes]
    assert panels == list(table.index)  # one labelled panel per group
    assert analysis.decide(summary).outcome == "undetermined"


def test_a_metrics_csv_cut_off_mid_row_is_never_reported_as_done(tmp_path):
    degradation_sweep(tmp_path)
    cut = tmp_path / "arch=plain,depth=20,seed=1" / "metrics.csv"
    with open(cut, "a") as f:
        f.write("1001,10,0.1,3.")  # a row cut off mid-number
    with pytest.warns(UserWarning, match="its last row is cut off mid-line: dropped"):
        summary = summary_of(tmp_path)
    assert row(summary, "plain", 20, seed=1).status == "metrics cut off"
    assert row(summary, "plain", 20, seed=1).iterations == 1000  # the partial row dropped
    assert analysis.aggregate(summary).set_index(["arch", "depth"]).loc[("plain", 20)].n == 1
    md = analysis.to_markdown(summary)
    assert "- arch=plain,depth=20,seed=1: metrics cut off" in md


def test_console_rows_of_runs_that_differ_late_in_long_labels_stay_apart():
    variants = [
        f"plain (schedule.optimizer.lr=0.05, schedule.optimizer.weight_decay={wd})"
        for wd in ("0.0001", "0.0005")
    ]
    summary = pd.DataFrame(
        {
            "variant": variants,
            **{"depth": [20, 20], "seed": [0, 0], "status": ["done", "done"]},
            **{"iterations": [100, 100], "final_train_error": [1.0, 2.0]},
            **{"final_test_error": [3.0, 4.0], "wall_time_s": [5.0, 6.0]},
        }
    )
    runs = [line.split("  ")[0].strip() for line in analysis.console_table(summary).splitlines()]
    assert runs[1:] == [
        "plain (lr=0.05, weight_decay=0.0001)",
        "plain (lr=0.05, weight_decay=0.0005)",
    ]
