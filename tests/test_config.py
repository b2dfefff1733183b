"""The config: experiment files compose to the paper's sweep, and a new architecture is one class
plus one config file, with no change to the runner or the analysis."""

from __future__ import annotations

import re

import pytest
import torch
from helpers import run_cli
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from depthsweep import CONF_DIR
from depthsweep.analysis.report import analyze
from depthsweep.errors import USER_ERROR, OptionError
from depthsweep.nets.models import CifarNet, PlainBlock
from depthsweep.training import config
from depthsweep.training.build import (
    build_net,
    make_datamodule,
    make_extras,
    make_module,
    make_schedule,
    make_trainer,
)
from depthsweep.training.config import compose_config, use_threads
from depthsweep.training.overrides import (
    added_hydra_key_error,
    check_added_keys,
    command_line_error,
    unknown_key_error,
)
from depthsweep.training.train import check_options, preflight, train


class ThinBlock(PlainBlock):
    """A user's own block: one conv layer per block, so depth = 3n + 2."""

    layers = 1

    def branch(self, x):
        return self.bn1(self.conv1(x))


class ThinNet(CifarNet):
    block = ThinBlock


def test_figure6_experiment_is_the_papers_grid():
    cfg = compose_config(["experiment=figure6"], hydra=True)
    assert cfg.name == "figure6"
    assert dict(cfg.hydra.sweeper.params) == {"arch": "plain,resnet", "depth": "20,32,44,56,110"}
    assert cfg.schedule.iterations == 64_000 and cfg.data.batch_size == 128


def test_new_architecture_needs_one_class_and_one_config_file(fake_cifar, tmp_path):
    (tmp_path / "conf" / "arch").mkdir(parents=True)
    (tmp_path / "conf" / "arch" / "thin.yaml").write_text(
        "# @package _global_\narch_name: thin\narch:\n  _target_: test_config.ThinNet\n"
    )
    overrides = [
        "arch=thin",
        "depth=11",  # 3n+2 with n=3
        f"data.root={fake_cifar}",
        "schedule.iterations=4",
        "trainer=cpu",
        "trainer.enable_progress_bar=false",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
    ]
    assert train(compose_config(overrides), tmp_path / "sweep" / "arch=thin,depth=11") == "done"
    summary = analyze(tmp_path / "sweep")
    row = summary.iloc[0]
    assert (row.arch, row.depth, row.status, row.iterations) == ("thin", 11, "done", 4)
    assert row.params == sum(p.numel() for p in ThinNet(11).parameters())


def test_configured_loggers_and_callbacks_are_used_beside_the_csv(fake_cifar, tmp_path):
    extra, seen = tmp_path / "extra_logs", tmp_path / "callback_saw"
    cfg = compose_config(
        [
            *["trainer=cpu", "depth=8", f"data.root={fake_cifar}", "data.batch_size=20"],
            *["schedule.iterations=10", "trainer.enable_progress_bar=false"],
            "+logger.extra._target_=pytorch_lightning.loggers.CSVLogger",
            f"+logger.extra.save_dir={extra}",
            "+callbacks.recorder._target_=helpers.RecordingCallback",
            f"+callbacks.recorder.path={seen}",
        ]
    )
    run_dir = tmp_path / "run"
    assert train(cfg, run_dir) == "done"
    (logged,) = extra.glob("*/*/metrics.csv")  # lightning_logs/version_0/metrics.csv
    assert "train_error" in logged.read_text().splitlines()[0]
    assert (run_dir / "metrics.csv").is_file()  # the analysis' CSV is still written
    assert seen.read_text() == "10"


def test_loggers_set_on_the_trainer_are_refused(tmp_path):
    cfg = compose_config(["+trainer.logger=false"])
    with pytest.raises(OptionError, match=r"trainer.logger would replace .* logger=NAME"):
        make_trainer(cfg, [])


@pytest.mark.parametrize(
    "added, meant",
    [
        ("+schedule.lr=0.05", "Did you mean schedule.optimizer.lr=0.05 (or schedule.warmup.lr)?"),
        ("+depht=20", "Did you mean depth=20?"),
        ("+schedule.warmup.lrr=0.1", "Did you mean schedule.warmup.lr=0.1?"),
        ("+diagnostics.grad_norm=3", "Did you mean diagnostics.grad_norm_every=3?"),
        ("+zzz.yyy=1", "(Hydra's + adds a key the config lacks)."),
        ("++schedule.lr=0.05", "Did you mean schedule.optimizer.lr=0.05 (or schedule.warmup.lr)?"),
        ("++zzz.yyy=1", "(Hydra's ++ adds a key the config lacks)."),
        ("+trainers=cpu", "Did you mean trainer=cpu?"),  # a group's name
        ("+callbacks.timer={every:1}", "(Hydra's + adds a key the config lacks)."),  # no object
        ("+foo={_target_:torch.optim.SGD}", "(Hydra's + adds a key the config lacks)."),  # unbuilt
    ],
)
def test_an_added_key_that_nothing_reads_is_refused_naming_the_key_meant(added, meant):
    cfg = compose_config([added])
    with pytest.raises(OptionError) as error:
        preflight(cfg, [added])
    key = added.lstrip("+").partition("=")[0]
    assert str(error.value).startswith(f"{added}: nothing reads {key}, so the run would train")
    assert str(error.value).endswith(meant)


@pytest.mark.parametrize(
    "added", ["+schedule.optimizer.nesterov=true", "+fused_group=0", "++schedule.iterations=5"]
)
def test_keys_that_are_read_may_be_added(added, fake_cifar):
    """An object's option (SGD's), the sweeper's own key, ++ of a known key: taken as given."""
    cfg = compose_config([f"data.root={fake_cifar}", added])
    net = preflight(cfg, [added])
    key, _, value = added.lstrip("+").partition("=")
    assert str(OmegaConf.select(cfg, key)).lower() == value
    if key == "schedule.optimizer.nesterov":  # what the run's optimizer gets
        optimizer, _ = make_schedule(cfg.schedule)
        assert optimizer(net.parameters()).defaults["nesterov"] is True


def test_plus_plus_is_checked_against_the_named_config_a_sweeper_gives(tmp_path):
    """In a Hydra app that has set no HydraConfig (the sweeper), the job's config is composed by
    the name given: experiments.transfer's has transfer.batch_size, and transfer.source is ???
    there (given on the command line), so ++ of either sets the config's own key."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for given in ["++transfer.batch_size=64", f"++transfer.source={tmp_path}"]:
            check_added_keys(compose("transfer", overrides=[given]), [given], "transfer")
        with pytest.raises(OptionError, match="nothing reads transfer.zzz"):
            check_added_keys(
                compose("transfer", ["++transfer.zzz=1"]), ["++transfer.zzz=1"], "transfer"
            )


@pytest.mark.parametrize(
    "override, message",
    [
        ("+schedule.optimizer.foo=1", "schedule: SGD.__init__() got an unexpected keyword"),
        ("+schedule.scheduler.foo=1", "schedule: PaperLR.__init__() got an unexpected keyword"),
        ("+arch.foo=1", "arch: ResNet.__init__() got an unexpected keyword argument 'foo'"),
        ("+module.foo=1", "module: Classifier.__init__() got an unexpected keyword argument"),
    ],
)
def test_an_objects_unknown_option_is_refused_before_training(override, message, fake_cifar):
    cfg = compose_config([f"data.root={fake_cifar}", override])
    with pytest.raises(OptionError, match=re.escape(message)):
        preflight(cfg, [override])


@pytest.mark.parametrize(
    "override, meant",
    [
        ("+data.limt=10", "data: CIFAR10DataModule.__init__() got an unexpected keyword argument "
         "'limt'. Did you mean data.limit=10?"),
        ("+arch.widht=8", "'widht'. Did you mean arch.width=8?"),
        ("+schedule.optimizer.momentun=0.5", "Did you mean schedule.optimizer.momentum=0.5?"),
        ("+trainer.max_step=3", "'max_step'. Did you mean trainer.max_steps? A run's length is "
         "schedule.iterations"),
    ],
)  # fmt: skip
def test_an_objects_misspelt_option_is_refused_naming_the_one_meant(override, meant, fake_cifar):
    cfg = compose_config([f"data.root={fake_cifar}", override])
    with pytest.raises(OptionError, match=re.escape(meant)):
        preflight(cfg, [override])


@pytest.mark.parametrize(
    "override, meant",
    [
        ("+schedule.scheduler.warmup_lr=0.01", "schedule.warmup.lr=0.01"),
        ("++schedule.scheduler.iterations=1000", "schedule.iterations=1000"),
        ("+schedule.scheduler.warmup_max_fraction=0.5", "schedule.warmup.max_fraction=0.5"),
        ("+data.seed=7", "seed=7"),
        ("+module.channels_last=true", "channels_last=true"),
    ],
)
def test_an_option_the_harness_sets_itself_is_refused_naming_the_key_that_sets_it(
    override, meant, fake_cifar
):
    """The constructor takes it, so it was let through (and the check's own hint said to add it
    with +), but the harness passes it itself: the run trained as if it were not given."""
    key = override.lstrip("+").partition("=")[0]
    cfg = compose_config([f"data.root={fake_cifar}", override])
    with pytest.raises(OptionError, match=re.escape(f"the harness sets {key.rpartition('.')[2]}")):
        preflight(cfg, [override])
    assert unknown_key_error([override.lstrip("+")]).endswith(f"set {meant} instead")
    with pytest.raises(OptionError, match=re.escape(f"set {meant.partition('=')[0]} instead")):
        make_datamodule(cfg) if key == "data.seed" else make_module(cfg, build_net(cfg))


@pytest.mark.parametrize("key", ["max_steps", "max_epochs", "min_steps", "min_epochs"])
def test_the_trainers_run_length_is_refused_for_schedule_iterations(key, fake_cifar):
    """make_trainer sets them from schedule.iterations: a value given would be overwritten."""
    cfg = compose_config([f"data.root={fake_cifar}", f"+trainer.{key}=3"])
    message = f"trainer.{key}=3: A run's length is schedule.iterations"
    with pytest.raises(OptionError, match=re.escape(message)):
        preflight(cfg, [f"+trainer.{key}=3"])


def test_an_arch_option_out_of_range_is_refused_before_training(fake_cifar):
    cfg = compose_config([f"data.root={fake_cifar}", "arch=inception", "arch.aux_weight=-1"])
    with pytest.raises(OptionError, match=re.escape("arch.aux_weight=-1: must be >= 0")):
        preflight(cfg)


@pytest.mark.parametrize(
    "arguments, error",
    [
        (["schedule.lr=0.05"], "schedule.lr=0.05: the config has no schedule.lr, and Hydra's "
         "+schedule.lr=0.05 would add one that nothing reads. Did you mean "
         "schedule.optimizer.lr=0.05 (or schedule.warmup.lr)?"),
        (["-m", "depth=8,20", "arch=plain,resnet", "data.limt=9"], "Did you mean data.limit=9?"),
        (["arch=plain", "arch.aux_weight=0.3"], "PlainNet takes no aux_weight."),
        (["schedule.iterations=5", "depth=20", "data.root=x", "+foo=1", "~seed"], None),
        (["-m", "arch=inception,plain", "arch.aux_weight=0.3"], None),  # inception's, first
        (["experiment=nope", "schedule.lr=1"], None),  # Hydra's own message says why
        (["trainers=cpu"], "Did you mean trainer=cpu"),  # a group's name mistyped
        (["schedule.optimizer.nesterov=true"], "schedule.optimizer.nesterov=true: the config "
         "does not list schedule.optimizer.nesterov, but torch.optim.SGD takes it: add it with "
         "+schedule.optimizer.nesterov=true"),  # Hydra's + is right there: an object's option
        (["schedule.optimizer.nesterv=true"], "torch.optim.SGD takes no nesterv. Did you mean "
         "+schedule.optimizer.nesterov=true?"),
        (["hydra.job.chdri=true"], "hydra.job.chdri=true: Hydra's config has no hydra.job.chdri. "
         "Did you mean hydra.job.chdir=true?"),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=1", "hydra.run.dir=x"], None),
        (["-m", "hydra.launcher.n_jobs=4"], "hydra.launcher.n_jobs=4: Hydra's config has no "
         "hydra.launcher.n_jobs. The launcher is BasicLauncher: choose one first "
         "(hydra/launcher=joblib)."),
        (["-m", "hydra/launcher=joblib", "hydra.launcher.zzz=1"], "hydra.launcher.zzz=1: Hydra's "
         "config has no hydra.launcher.zzz."),  # joblib chosen: no advice to choose it
        (["trainer.max_steps=10"], "trainer.max_steps=10: A run's length is schedule.iterations"),
        # Hydra's own + is right for a dict Hydra reads whole and for a key its plugin reads
        (["hydra.job.env_set.OMP_NUM_THREADS=1"], "add it with "
         "+hydra.job.env_set.OMP_NUM_THREADS=1"),
        (["-m", "hydra/launcher=joblib", "hydra.launcher.return_as=list"], "add it with "
         "+hydra.launcher.return_as=list"),
    ],
)  # fmt: skip
def test_a_key_the_config_lacks_is_named_with_the_one_meant(arguments, error):
    """What experiments.run says before Hydra's own error (exit 1), which suggests a + that would
    add a key nothing reads."""
    got = unknown_key_error(arguments)
    assert got == error if error is None else error in got


@pytest.mark.parametrize(
    "arguments, config_name, error",
    [
        (["~seed"], "config", "~seed: the harness reads seed, and without it a run fails "
         "part-way or takes a default unsaid: set seed=VALUE (now 0) instead"),
        (["depth=8", "~schedule.warmup"], "config", "set one of its options (lr, "
         "until_train_error, max_fraction, from_depth) instead"),
        (["~arch_name"], "config", "set arch=NAME (its file gives the label) instead"),
        (["~data.root"], "config", "~data.root: the harness reads data.root"),  # pin_data_root
        (["~callbacks"], "config", "set callbacks=none, or ~callbacks.NAME for one of its"),
        (["+callbacks.timer._target_=x", "~callbacks.timer"], "config", None),  # one added
        (["logger=tensorboard", "~logger.tensorboard.version"], "config", None),  # Lightning's
        (["~arch"], "config", "set arch=NAME, a file of conf/arch/, instead"),
        (["~transfer.data_root", "transfer.source=x"], "transfer", "VALUE (now null)"),
        (["module.model=x", "transfer.source=x"], "transfer", "the config has no module.model"),
        (["~schedule.optimizer._target_"], "config", "the harness reads"),
        (["~schedule.optimizer.weight_decay"], "config", "set schedule.optimizer.weight_decay="
         "VALUE (now 0.0001) instead"),  # SGD's default, 0, would be taken unsaid
        (["~callbacks.none_such"], "config", None),  # nothing to delete: Hydra says so
        (["~seed", "transfer.source=x"], "transfer", "~seed: the harness reads seed"),
        (["schedule.optimizer=0.05", "transfer.source=x"], "transfer", "schedule.optimizer is a "
         "node of options"),
        (["hydra/launcher=joblib", "+hydra.launcher.n_job=1", "transfer.source=x"], "transfer",
         "nothing reads hydra.launcher.n_job"),
        (["+data.seed=1", "transfer.source=x"], "transfer", None),  # + keys: each job's check
        (["-m", "experiment=figure6_cpu", "--cfg", "job"], "config", "-m and --cfg: Hydra takes "
         "one of --run, --multirun, --cfg, --info at a time: --cfg job without -m shows one "
         "job's config (give each swept key one value)"),  # Hydra's ValueError traceback
        (["--multirun", "--info=searchpath"], "config", "--multirun and --info:"),
        (["experiment=figure6_cpu", "--cfg", "job"], "config", None),
    ],
)  # fmt: skip
def test_a_deleted_key_and_transfers_command_line_are_checked_before_hydra(
    arguments, config_name, error
):
    """Hydra's ~KEY of a key the harness reads failed mid-build, a traceback and a run directory
    left; experiments.transfer checked only unknown keys (a +hydra.KEY no plugin reads and a node
    given one value went through)."""
    got = command_line_error(arguments, config_name)
    assert got == error if error is None else error in got


def test_experiments_transfers_keys_are_checked_against_its_own_config():
    got = unknown_key_error(["transfer.labels_per_clas=10", "transfer.source=x"], "transfer")
    assert got.endswith("Did you mean transfer.labels_per_class=10?")
    got = unknown_key_error(["data.root=/tmp/x", "transfer.source=x"], "transfer")
    assert got.endswith("Did you mean transfer.data_root=/tmp/x?")  # run's key, transfer's name
    assert (
        unknown_key_error(["transfer.labels_per_class=10", "transfer.source=x"], "transfer") is None
    )


@pytest.mark.parametrize(
    "arguments, error",
    [
        (["arch_name=plain"], "arch_name=plain: arch_name is the label the arch file gives its "
         "net (conf/arch/), not the net: the run would train the arch's net under another name. "
         "Did you mean arch=plain?"),
        (["-m", "arch_name=plain,resnet"], "Did you mean arch= one of inception, plain, resnet"),
        (["schedule.optimizer=0.05"], "schedule.optimizer=0.05: schedule.optimizer is a node of "
         "options (lr, momentum, weight_decay), not one value; set one of them: e.g. "
         "schedule.optimizer.lr=0.05"),
        (["schedule.warmup=null"], "schedule.warmup is a node of options (lr, until_train_error, "
         "max_fraction, from_depth), not one value; set one of them"),
        (["schedule.optimizer={_target_:torch.optim.Adam,_partial_:true,lr:0.001}"], None),
        (["schedule.lr=0.05"], "Did you mean schedule.optimizer.lr=0.05"),  # as Hydra would stop
        (["-m", "arch=plain,resnet", "depth=8,20", "seed=0,1"], None),
        (["hydra.job.chdri=true", "hydra.run.dir=x"], "Did you mean hydra.job.chdir=true?"),
        (["arch=resnt"], "arch=resnt: no such arch (conf/arch/ holds inception, plain, resnet, "
         "resnet_bottleneck). Did you mean arch=resnet?"),  # Hydra's: a dozen lines
        (["-m", "experiment=smok"], "experiment=smok: no such experiment (conf/experiment/ holds "
         "figure6, figure6_cpu, figure6_quick, smoke, transfer_source). Did you mean "
         "experiment=smoke?"),
        (["-m", "arch=plain,resnte"], "Did you mean arch=resnet?"),  # any of a sweep's list
        (["-m", "arch=zzz"], "arch=zzz: no such arch (conf/arch/ holds inception, plain, resnet, "
         "resnet_bottleneck)."),
        (["-m", "hydra/launcher=joblib", "logger=none", "arch=choice(plain,resnet)"], None),
    ],
)  # fmt: skip
def test_a_command_line_that_would_train_something_else_is_refused_before_hydra(arguments, error):
    """experiments.run's first check: arch_name relabelled a ResNet "plain" and trained it; a node
    given a value failed mid-build with Hydra's traceback and left a run directory behind."""
    got = command_line_error(arguments)
    assert got == error if error is None else error in got


@pytest.mark.parametrize(
    "arguments, error",
    [
        (["-m", "hydra/launcher=joblib", "+hydra.launcher.n_job=1"],
         "+hydra.launcher.n_job=1: nothing reads hydra.launcher.n_job, so the run would go on as "
         "if it were not given (Hydra's + adds a key beside the fields of its JobLibLauncherConf). "
         "Did you mean hydra.launcher.n_jobs=1?"),
        (["-m", "experiment=figure6_cpu", "+hydra.launcher.n_job=1"], "JobLibLauncherConf"),
        (["+hydra.sweeper.max_batch_sise=3"], "Did you mean hydra.sweeper.max_batch_size=3?"),
        (["+hydra.foo=1"], "nothing reads hydra.foo"),
        (["++hydra.foo=1"], "nothing reads hydra.foo"),
        (["+hydra.job.env_set.OMP_NUM_THREADS=1"], None),  # a dict: Hydra sets each
        (["++hydra.launcher.n_jobs=1", "hydra/launcher=joblib"], None),  # its own field
        (["-m", "depth=8,20", "+schedule.lr=1"], None),  # not Hydra's: check_added_keys
        # read though their dataclasses lack them: a sampler's constructor takes constant_liar,
        # joblib's launcher hands every key to joblib.Parallel, submitit's to its executor
        (["-m", "hparams_search=lr_optuna", "+hydra.sweeper.sampler.constant_liar=true"], None),
        (["-m", "hydra/launcher=joblib", "+hydra.launcher.return_as=list"], None),
        (["-m", "hydra/launcher=slurm", "+hydra.launcher.exclusive=true"], None),
        (["-m", "hparams_search=lr_optuna", "+hydra.sweeper.sampler.sed=1"], "nothing reads"),
    ],
)  # fmt: skip
def test_a_key_added_to_hydras_own_config_that_no_plugin_reads_is_named(arguments, error):
    """+hydra.launcher.n_job=1 went to joblib beside n_jobs, which stayed -1: in a sweep such keys
    configure the launch, so experiments.run checks them before Hydra runs."""
    got = added_hydra_key_error(arguments)
    assert got == error if error is None or "+" in error else error in got


def test_a_key_no_hydra_plugin_reads_stops_a_sweep_before_it_launches(tmp_path):
    out = tmp_path / "out"
    done = run_cli(
        "experiments.run", "-m", "hydra/launcher=joblib", "+hydra.launcher.n_job=1",
        "depth=8,14", f"hydra.sweep.dir={out}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == USER_ERROR, done.stderr
    assert done.stderr.count("\n") == 1 and "hydra.launcher.n_jobs=1" in done.stderr
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "data, error",
    [
        (["data.root=none", "data.download=false"], "error: CIFAR-10 not found"),
        # downloading (the default), fused, two jobs at once: each job fetching its data left the
        # fused plan and its members' directories behind when that failed
        (["data.root=afile", "fuse=2", "seed=0,1", "hydra/launcher=joblib"], "error: data.root="),
    ],
    ids=["download=false", "fused, downloading"],
)
def test_missing_data_stops_a_sweep_before_its_launch_estimate(data, error, tmp_path):
    """No data is one line before the steps are timed (a minute of timing, on a busy CPU, came
    first), nothing written."""
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "out"
    done = run_cli("experiments.run", "-m", "depth=8,14", *data, f"hydra.sweep.dir={out}",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == USER_ERROR, done.stderr
    assert done.stderr.startswith(error) and done.stderr.count("\n") == 1, done.stderr
    assert "sweep:" not in done.stdout and not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "entry, sweep, plus",
    [
        ("experiments.run", [], ""),  # Hydra would refuse it, suggesting +
        ("experiments.run", [], "+"),
        ("experiments.run", ["-m", "depth=8,14"], "++"),  # checked by the sweeper's own Hydra
        ("experiments.transfer", ["transfer.source=any"], "++"),  # before the source is read
        ("experiments.transfer", ["transfer.source=any"], ""),  # its own config's keys
    ],
    ids=["run, no plus", "run", "sweep", "transfer", "transfer, no plus"],
)
def test_hydras_own_suggestion_of_a_plus_is_refused_before_anything_trains(
    entry, sweep, plus, tmp_path
):
    """Hydra refuses schedule.lr=0.05 (in several lines, which experiments.run now says in one
    before Hydra runs) and suggests +schedule.lr=0.05, which trained at 0.1; ++,
    which sets a key whether or not the config has it, did the same (both prefixes in this
    process: the tests above)."""
    out = tmp_path / "out"
    where = "hydra.sweep.dir" if "-m" in sweep else "hydra.run.dir"
    done = run_cli(entry, *sweep, f"{plus}schedule.lr=0.05", f"{where}={out}", cwd=tmp_path)
    assert done.returncode == USER_ERROR, done.stderr
    assert done.stderr.count("\n") == 1 and "schedule.optimizer.lr=0.05" in done.stderr
    assert not out.exists()


def test_a_relative_data_root_is_where_the_command_started_also_after_hydras_chdir(
    tmp_path, monkeypatch
):
    """hydra.job.chdir=true moves a job into its run directory: data.root=data, relative to where
    the command was typed, was looked for in the run directory."""
    started, run_dir = tmp_path / "project", tmp_path / "project" / "runs" / "one"
    run_dir.mkdir(parents=True)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra.job.chdir=true"], return_hydra_config=True)
    cfg.hydra.runtime.cwd = str(started)
    HydraConfig.instance().set_config(cfg)
    monkeypatch.chdir(run_dir)  # as Hydra does with chdir=true
    try:
        config.pin_data_root(cfg)
    finally:
        HydraConfig.instance().cfg = None
    assert cfg.data.root == str(started / "data")
    config.pin_data_root(cfg)  # outside Hydra, an absolute root stays as it is
    assert cfg.data.root == str(started / "data")


def test_threads_sets_torchs_threads_for_a_run_on_the_cpu():
    before = torch.get_num_threads()
    try:
        use_threads(compose_config(["trainer=cpu", "threads=3"]))
        assert torch.get_num_threads() == 3
        use_threads(compose_config(["trainer=cpu"]))  # null: left as it is
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [0, "two", 1.5])
def test_a_thread_count_that_is_no_count_is_refused(threads):
    with pytest.raises(OptionError, match=f"threads={threads!r}: must be an integer >= 1"):
        check_options(compose_config([f"threads={threads}"]))


@pytest.mark.parametrize(
    "override, message",
    [
        ("fuse=0", "fuse=0: must be an integer >= 1"),
        ("fuse=2.5", "fuse=2.5: must be an integer >= 1"),
        ("fuse='3'", "fuse='3': must be an integer >= 1"),
        ("fuse=3-where-avx2", "fuse='3-where-avx2': must be an integer >= 1, or K-where-avx512"),
        ("diagnostics.grad_norm_every=-1", "grad_norm_every=-1: must be an integer >= 0"),
        ("progress_every=-1", r"progress_every=-1: seconds >= 0 \(0: at evaluations only\)"),
        ("progress_every=soon", "progress_every='soon': seconds >= 0"),
        ("progress_every=true", "progress_every=True: seconds >= 0"),
        ("optimized_metric=final_eror", "optimized_metric='final_eror': null or one of final_tra"),
        # the warm-up's, read only from its depth on: a sweep's deep runs failed mid-training
        ("schedule.warmup.lr=-5", "schedule.warmup.lr=-5: must be a number > 0"),
        ("schedule.warmup.lr=abc", "schedule.warmup.lr='abc': must be a number > 0"),
        (
            "schedule.warmup.until_train_error=abc",
            "until_train_error='abc': must be a number$",
        ),  # fmt: skip
        ("schedule.warmup.max_fraction=1.5", "max_fraction=1.5: must be a number >= 0 and <= 1"),
        ("schedule.warmup.from_depth=-1", "from_depth=-1: must be an integer >= 0, or null: never"),
        ("schedule.optimizer.lr=abc", "schedule.optimizer.lr='abc': must be a number > 0"),
        ("schedule.optimizer.lr=0", "schedule.optimizer.lr=0: must be a number > 0"),
        ("schedule.optimizer.momentum=abc", "momentum='abc': must be a number >= 0"),
        # fp32 images against fp64 or bf16 weights failed at the first step, after the checks
        ("trainer.precision=64-true", "trainer.precision=64-true: a run trains in 32-true, bf16"),
        ("trainer.precision=bf16-true", "trainer.precision=bf16-true: a run trains in 32-true"),
    ],
)
def test_an_option_no_run_could_use_is_refused_before_anything_is_built(override, message):
    """Options read only during or after training (a progress line, a gradient-norm logger, the
    metric a search returns, the sweeper's group size, the warm-up's numbers) are checked with the
    others."""
    with pytest.raises(OptionError, match=message):
        check_options(compose_config([override]))


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.devices=3", r"trainer.devices=3: a run trains on one device \(1, or one named"),
        ("trainer.devices=-1", "trainer.devices=-1: a run trains on one device"),
        ("trainer.devices=auto", "trainer.devices=auto: a run trains on one device"),
        ("trainer.devices=[0,1]", r"trainer.devices=\[0, 1\]: a run trains on one device"),
        ("+trainer.num_nodes=2", "trainer.num_nodes=2: a run trains on one device"),
    ],
)
def test_more_than_one_device_is_refused_before_anything_is_built(override, message):
    """Lightning would start a process per device, each running the command again: they found
    the run directory held and left, and the first waited for them for good, deaf to Ctrl-C."""
    with pytest.raises(OptionError, match=message):
        preflight(compose_config(["trainer=cpu", override]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["schedule.lr_scales_with_batch=no"],
            "schedule.lr_scales_with_batch='no': must be true or",
        ),
        (["data.download=off"], "data.download='off': must be true or false"),
        (["arch.zero_init_residual=yes"], "arch.zero_init_residual='yes': must be true or false"),
        (["arch=inception", "arch.reduce=flase"], "arch.reduce='flase': must be true or false"),
        (["trainer.enable_progress_bar=1"], "trainer.enable_progress_bar=1: must be true or false"),
        (["arch=inception", "arch.reduce=null"], "arch.reduce=None: must be true or false"),
    ],
)
def test_a_yes_no_option_given_as_text_is_refused(overrides, message):
    """Python reads any text as true: schedule.lr_scales_with_batch=no scaled the lr, and
    data.download=no downloaded."""
    with pytest.raises(OptionError, match=message):
        check_options(compose_config(overrides))


def test_the_options_defaults_pass_their_checks():
    check_options(compose_config(["progress_every=0.5", "optimized_metric=final_test_error"]))


@pytest.mark.parametrize(
    "flags, native, amx",
    [
        ("fpu avx512f amx_bf16 amx_tile", True, True),  # an Intel Xeon since Sapphire Rapids
        ("fpu avx512f avx512_bf16", True, False),  # an AMD EPYC since Zen 4
        ("fpu avx2 fma", False, False),
    ],
)
def test_bf16_where_native_reads_the_cpus_flags(flags, native, amx, tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n"
    )
    assert config.cpu_has_native_bf16(cpuinfo) == native
    assert config.cpu_has_amx(cpuinfo) == amx
    assert not config.cpu_has_native_bf16(tmp_path / "none")  # no /proc: not known, fp32
    monkeypatch.setattr(config, "cpu_has_native_bf16", lambda: native)
    cfg = compose_config(["trainer=cpu", "trainer.precision=bf16-where-native"])
    assert config.resolve_precision(cfg.trainer) == ("bf16-mixed" if native else "32-true")


@pytest.mark.parametrize(
    "given, recorded",
    [("32", "32-true"), ("bf16", "bf16-mixed"), ("16", "bf16-mixed"), ("16-mixed", "bf16-mixed")],
)
def test_a_precision_is_recorded_as_it_trains_on_a_cpu(given, recorded):
    """Lightning's short names by their full ones, and fp16, which Lightning trains as bf16 on a
    CPU: run.json said "16" of a bf16 run, and summaries grouped runs by it."""
    cfg = compose_config(["trainer=cpu", f"trainer.precision={given}"])
    assert config.resolve_precision(cfg.trainer) == recorded
    check_options(cfg)


@pytest.mark.parametrize(
    "option, precision, amx, channels_last",
    [
        ("auto", "32-true", False, False),
        ("auto", "32", False, False),
        ("auto", "bf16-mixed", False, True),
        ("auto", "16-mixed", False, True),
        ("auto", "bf16-mixed", True, False),  # with AMX, contiguous bf16 was faster
        ("auto", "bf16-where-native", False, False),  # on a CPU without native bf16: fp32
        ("true", "32-true", False, True),
        ("true", "bf16-mixed", True, True),
        ("false", "bf16-mixed", False, False),
    ],
)
def test_channels_last_auto_follows_the_precision_and_the_cpu(
    option, precision, amx, channels_last, monkeypatch
):
    monkeypatch.setattr(config, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(config, "cpu_has_amx", lambda: amx)
    cfg = compose_config(
        ["trainer=cpu", f"trainer.precision={precision}", f"channels_last={option}"]
    )
    assert config.resolve_channels_last(cfg) is channels_last
    module = make_module(cfg, preflight(cfg))  # what the run trains with
    assert module.hparams.channels_last is channels_last


@pytest.mark.parametrize(
    "batch, scales, lr", [(64, True, 0.05), (256, True, 0.2), (64, False, 0.1)]
)
def test_the_lr_scales_with_the_batch_when_asked(batch, scales, lr):
    cfg = compose_config([f"schedule.lr_scales_with_batch={scales}"])
    optimizer, scheduler = make_schedule(cfg.schedule, warmup_lr=0.01, batch=batch)
    sgd = optimizer([torch.zeros(1, requires_grad=True)])
    warm = scheduler(sgd)
    assert sgd.param_groups[0]["initial_lr"] == pytest.approx(lr)
    assert warm.warmup_lr == pytest.approx(0.01 * lr / 0.1)


def test_figure6_cpu_is_the_cpu_grid_fused_one_job_per_core():
    cfg = compose_config(["experiment=figure6_cpu"], hydra=True)
    assert cfg.name == "figure6_cpu"
    assert dict(cfg.hydra.sweeper.params) == {
        "depth": "56,38,20",
        "arch": "plain,resnet",
        "seed": "0,1,2",
    }
    assert (
        cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == -1
    )
    assert (cfg.arch.width, cfg.data.limit, cfg.schedule.iterations, cfg.threads, cfg.fuse) == (
        4,
        2000,
        2500,
        1,
        "3-where-avx512",  # each arch and depth's seeds as one network, where that is faster
    )
    assert cfg.trainer.precision == "bf16-where-native" and cfg.data.batch_size == 128


@pytest.mark.parametrize("arch", ["plain", "resnet"])
def test_figure6_cpu_warms_both_archs_up_from_depth_56(arch):
    # the experiment is merged after the arch group, which sets 110 (resnet) or null (plain)
    cfg = compose_config(["experiment=figure6_cpu", f"arch={arch}"])
    assert cfg.schedule.warmup.from_depth == 56


@pytest.mark.slow
def test_an_experiment_without_m_says_it_trains_one_run(tmp_path):
    """experiment=smoke is a sweep: without -m Hydra trains its config once, which said nothing."""
    done = run_cli(
        "experiments.run", "experiment=smoke", f"data.root={tmp_path / 'none'}",
        "data.download=false", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path,
    )  # fmt: skip
    assert done.stdout.startswith(
        "note: experiment=smoke sweeps arch, depth (hydra.sweeper.params): without -m this "
        "trains one run; add -m for the sweep\n"
    ), done.stdout
    assert done.returncode == USER_ERROR  # then the missing data, as always


def test_a_whole_object_added_as_a_dict_is_built(fake_cifar):
    """+callbacks.timer={_target_:...} adds a Lightning callback as +callbacks.timer._target_=...
    does: the harness builds each node of callbacks, so nothing is left unread."""
    added = "+callbacks.timer={_target_:pytorch_lightning.callbacks.Timer}"
    cfg = compose_config([f"data.root={fake_cifar}", added])
    preflight(cfg, [added])
    _, callbacks = make_extras(cfg, "unused")
    assert [type(c).__name__ for c in callbacks] == ["Timer"]
