"""experiments.frontier: the configurations tried for a CPU Figure 6, one row per sweep, every
number from the sweep's own files."""

from __future__ import annotations

from pathlib import Path

from fakesweep import degradation_sweep, write_sweep

from experiments import frontier


def test_a_sweep_becomes_a_row_of_its_knobs_minutes_errors_and_verdict(tmp_path, capsys):
    runs = [
        {"arch": arch, "depth": depth, "seed": seed, "train": train + seed * 0.15}
        for arch, errors in [("plain", [2.0, 6.0, 20.0]), ("resnet", [4.0, 3.0, 1.0])]
        for depth, train in zip((20, 32, 56), errors, strict=True)
        for seed in (0, 1, 2)
    ]
    sweep = write_sweep(tmp_path / "w4_2k", runs)
    for config in sweep.glob("*/config.yaml"):  # the batch size the training cost counts
        config.write_text(config.read_text() + "data:\n  batch_size: 128\n")
    (sweep / "time.txt").write_text("$ time python -m ...\n\nreal\t41m30.000s\nuser\t1m\n")
    assert frontier.main([str(sweep), "--out", str(tmp_path / "frontier.md")]) == 0
    header, rule, line = (tmp_path / "frontier.md").read_text().splitlines()
    assert header.startswith(
        "| sweep | width | size | images | iterations | batch | fuse | peak lr | precision"
        " | warm-up from depth (plain / resnet) |"
    )
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:2] == ["w4_2k", "16"]  # the fake runs' config predates arch.width: the paper's
    assert cells[5:8] == ["128", "1", "0.1"]  # batch; not fused; the lr its metrics.csv logs
    assert cells[9] == "— / 110"  # each arch's warm-up depth, from its runs' config (conf/arch/)
    assert cells[10:12] == ["3", "20/32/56"]  # seeds, depths
    # the fake runs' params (1000 x depth) and multiply-adds (50,000 x depth) per image; training:
    # 50,000 x (20 + 32 + 56) x 6 runs at each depth x 1,000 iterations x batch 128 = 4.15e12
    assert cells[12:15] == ["20.0 / 32.0 / 56.0", "1.0 / 1.6 / 2.8", "4.1"]
    assert cells[15] == "41.5"  # minutes, from time.txt
    assert cells[16:18] == ["2.9 / 6.9 / 20.9", "4.9 / 3.9 / 1.9"]  # train + 0.75 + 0.15
    # each part's comparisons: seeds 0.15 apart at every depth, so each difference is exact, its
    # SE 0.15 x sqrt(2/3) and its interval +-2.78 (t, 4 dof) x 0.122 = +-0.34 points
    assert cells[18].startswith("supported: 32−20 +4.0 [+3.7, +4.3] p ")
    assert "; 56−32 +14.0 [+13.7, +14.3] p " in cells[18] and "; k +" in cells[18]
    assert cells[19].startswith("supported: 20−32 +1.0 [+0.7, +1.3] p ")
    assert "; 20−56 +3.0 [+2.7, +3.3] p " in cells[19] and "; k -" in cells[19]
    assert cells[20].startswith("supported: plain-56 − resnet-56 +19.0 [+18.7, +19.3] p ")
    assert cells[21] == "reproduced"
    assert capsys.readouterr().out == (tmp_path / "frontier.md").read_text()


def test_a_directory_without_runs_or_an_unwritable_out_is_one_line_and_nothing_written(
    tmp_path, capsys
):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "frontier.md"
    sweep = degradation_sweep(tmp_path / "sweep")
    for given in (tmp_path / "empty", tmp_path / "missing"):  # after a good sweep: no row kept
        assert frontier.main([str(sweep), str(given), "--out", str(out)]) == 2
        printed, err = capsys.readouterr()
        assert printed == "" and err.startswith("error: ") and err.count("\n") == 1
        assert str(given) in err
    assert not out.exists()
    assert frontier.main([str(sweep), "--out", str(tmp_path / "no" / "frontier.md")]) == 2
    printed, err = capsys.readouterr()
    assert printed == "" and err.startswith(f"error: cannot write {tmp_path / 'no'}")
    assert err.count("\n") == 1


def test_a_sweep_without_both_archs_at_judged_depths_keeps_every_column(tmp_path):
    # nothing at depths >= 20: the verdict is undetermined and judges no part, yet the row keeps
    # its cells; plain alone: its part judged, the others say what they lack
    def cells_of(name: str, archs: tuple[str, ...], depths: tuple[int, ...]) -> list[str]:
        runs = [
            {"arch": arch, "depth": depth, "seed": seed, "train": 2.0 + depth / 10}
            for arch in archs
            for depth in depths
            for seed in (0, 1)
        ]
        sweep = write_sweep(tmp_path / name, runs)
        out = tmp_path / f"{name}.md"
        assert frontier.main([str(sweep), "--out", str(out)]) == 0
        header, rule, line = out.read_text().splitlines()
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(frontier.HEADER) == header.count("|") - 1
        return cells

    small = cells_of("small", ("plain", "resnet"), (8, 14))
    assert small[-4:] == ["—", "—", "—", "undetermined"]
    assert small[14] == "—"  # no batch size in its config: no training cost
    plain = cells_of("plain_only", ("plain",), (20, 56))
    assert plain[-4:] == [
        "untested: it needs ≥ 3 depths 20–110, the deepest ≥ 56 (has 20, 56)",
        "untested: it needs ≥ 3 depths 20–110, the deepest ≥ 56 (has none)",
        "untested: plain and resnet share no depth ≥ 56 (shared: none)",
        "inconclusive",
    ]


def test_an_untested_comparison_says_why(tmp_path):
    # one seed a depth (a screening sweep): no comparison can be tested, and the cell says so
    runs = [
        {"arch": arch, "depth": depth, "seed": 0, "train": train}
        for arch, errors in [("plain", [2.0, 20.0]), ("resnet", [4.0, 1.0])]
        for depth, train in zip((20, 56), errors, strict=True)
    ]
    sweep = write_sweep(tmp_path / "screen", runs)
    assert frontier.main([str(sweep), "--out", str(tmp_path / "frontier.md")]) == 0
    cells = [c.strip() for c in (tmp_path / "frontier.md").read_text().splitlines()[2].split("|")]
    assert "untested: plain-56 − resnet-56 (one seed at plain-56 and resnet-56)" in cells
    # two depths: no trend can be tested at all
    assert "untested: it needs ≥ 3 depths 20–110, the deepest ≥ 56 (has 20, 56)" in cells


def test_a_depth_between_on_the_wrong_side_is_shown_with_what_it_stopped(tmp_path):
    # plain rises 20 -> 44 -> 56, but plain-32 lies well below plain-20: the trend is left open
    means = {"plain": [5.0, 2.0, 9.0, 12.0], "resnet": [9.0, 8.0, 7.0, 6.0]}
    runs = [
        {"arch": arch, "depth": depth, "seed": seed, "train": train + 0.2 * seed}
        for arch, errors in means.items()
        for depth, train in zip((20, 32, 44, 56), errors, strict=True)
        for seed in range(3)
    ]
    sweep = write_sweep(tmp_path / "between", runs)
    assert frontier.main([str(sweep), "--out", str(tmp_path / "frontier.md")]) == 0
    cells = [c.strip() for c in (tmp_path / "frontier.md").read_text().splitlines()[2].split("|")]
    [plain] = [c for c in cells if c.startswith("open: 44−20")]
    assert "; but 32−20 -3.0 [-3.5, -2.5] p against 2.6e-05; k " in plain  # SE 0.2 / √3 a side, t4
    assert cells[-2] == "inconclusive"


def test_the_readme_shows_the_committed_frontier_row_for_row():
    """The README's copy of results/figure6_cpu_frontier/frontier.md: the same rows, none added
    or lost (a pasted row once appeared twice)."""
    root = Path(__file__).resolve().parents[1]
    table = (root / "results/figure6_cpu_frontier/frontier.md").read_text().splitlines()
    readme = (root / "README.md").read_text().splitlines()
    start = readme.index(table[0])
    end = next(i for i in range(start, len(readme)) if not readme[i].startswith("|"))
    assert readme[start:end] == table
