"""What a command line's overrides would do, checked before anything trains: a key that nothing
would read (Hydra's `+KEY` beside an object's options, `+hydra.KEY` beside a plugin's fields), a
node of options given one value, a label given for the net it names; each refused with one line
naming the key meant."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
from collections.abc import Sequence

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from depthsweep import CONF_DIR
from depthsweep.errors import OptionError
from depthsweep.runs.rundir import flat_config
from depthsweep.training.build import RUN_LENGTH, harness_sets, run_length_is_schedule
from depthsweep.training.config import compose_config

_ABSENT = object()

# What the harness adds to a job with + itself: the sweeper's fused group (training.sweeper.plan).
HARNESS_ADDED = {"fused_group"}
# Keys of a primary config that its entry point never reads (config name: key prefixes), left
# out of "Did you mean" hints: experiments.transfer calls make_schedule without a warm-up (the
# paper's recipe for a deep net from scratch), so the shared schedule/ group's warm-up options
# (read or not: the training window's threshold only ends a warm-up) would only name its runs.
UNREAD = {"transfer": ("schedule.warmup",)}


def unread(key: str, config_name: str) -> bool:
    """Whether `key` (+ and ++ stripped) is one `config_name`'s entry point never reads."""
    return any(key == k or key.startswith(f"{k}.") for k in UNREAD.get(config_name, ()))


def _config_without(overrides: Sequence[str], config_name: str) -> DictConfig:
    """The job's config composed without its `++` overrides: in a Hydra app (a job, or the
    sweeper checking one) by the app's own Hydra; outside one, as experiments.run's."""
    others = [o for o in overrides if not o.startswith("++")]
    if not GlobalHydra.instance().is_initialized():
        return compose_config(others)
    return compose(config_name, overrides=others)


def _has(cfg: DictConfig, key: str) -> bool:
    """Whether `cfg` has `key`, its value null or ??? (a value the user must give) included."""
    try:
        return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True) is not _ABSENT
    except MissingMandatoryValue:
        return True


def check_added_keys(
    cfg: DictConfig, overrides: Sequence[str], config_name: str | None = None
) -> None:
    """Refuse `+KEY=VALUE` where nothing reads KEY. Hydra's + adds a key the config lacks, and
    Hydra suggests it for a key it does not know; an object's node (one with `_target_`) refuses
    an option its constructor does not take, but a key anywhere else is never looked at, and the
    run would train as if it were not there (+schedule.lr=0.05 trains at lr 0.1). The message
    names the key meant: one whose last name is the same, or the closest. `++KEY` sets KEY
    whether or not the config has it: where it has (the job's config composed without the `++`
    overrides), the value is the config's own; where not, it was added like `+KEY`.
    `config_name`: the primary config; None: the job's (the sweeper names it: Hydra sets no
    HydraConfig there)."""
    if config_name is None:
        config_name = HydraConfig.get().job.config_name if HydraConfig.initialized() else "config"
    base = None
    for override in overrides:
        typed, sep, value = override.partition("=")
        if not sep or not typed.startswith("+"):
            continue
        key = typed.lstrip("+")
        if key in HARNESS_ADDED or key.startswith("hydra") or "@" in key or "/" in key:
            continue  # the harness's own; Hydra's; a config group added to the defaults
        if (CONF_DIR / key).is_dir():
            continue
        if (
            key.startswith(("callbacks.", "logger."))
            and key.count(".") == 1
            and "_target_" in value
        ):
            continue  # a whole object (+callbacks.timer={_target_:...}): the harness builds each
        if typed.startswith("++"):
            base = _config_without(overrides, config_name) if base is None else base
            if _has(base, key):
                continue  # the config's own key, set
        node, read = cfg, False
        for part in key.split(".")[:-1]:
            node = node.get(part) if isinstance(node, DictConfig) else None
            read = isinstance(node, DictConfig) and "_target_" in node
            if read or not isinstance(node, DictConfig):
                break
        if read and not harness_sets(key):
            continue  # an object's option: its constructor takes it or refuses it
        if read:
            raise OptionError(
                f"{override}: the harness sets {key.rpartition('.')[2]} itself, so the run would "
                f"train as if it were not given{_instead(cfg, key, value)}"
            )
        raise OptionError(
            f"{override}: nothing reads {key}, so the run would train as if it were not given "
            f"(Hydra's {typed[: -len(key)]} adds a key the config lacks)."
            f"{_meant(cfg, key, value, config_name=config_name)}"
        )


def _instead(cfg: DictConfig, key: str, value: str) -> str:
    """For `key`, an option the harness sets itself: ": set K=VALUE instead", K the key of `cfg`
    that sets it, or its options where K is a node, as it is where K is no key ("arch and
    depth"); "" where `cfg` (another entry point's) has no such key."""
    meant = harness_sets(key)
    if not _has(cfg, meant.split()[0].rstrip(",")):  # "arch and depth": arch
        return ""
    if " " in meant:
        return f": set {meant} instead"
    if isinstance(OmegaConf.select(cfg, meant), DictConfig):
        return f": set {meant}'s options instead"
    one = not value.lstrip().startswith(("[", "{"))
    return f": set {meant}={value} instead" if one else f": set {meant} instead"


def _meant(
    cfg: DictConfig, key: str, value: str, prefix: str = "", config_name: str = "config"
) -> str:
    """The hint for `key`, which `cfg` lacks (" Did you mean K=VALUE?"): a key whose last name is
    the same, or the closest of its siblings or of `config_name`'s groups, never one its entry
    point does not read (`unread`); "" if none. `prefix`:
    where `cfg` sits ("hydra.")."""
    container = OmegaConf.to_container(cfg, resolve=False)
    known = [k for k in flat_config(container) if k != key and not unread(k, config_name)]
    parent, _, last = key.rpartition(".")
    meant = [k for k in known if k.rpartition(".")[2] == last]  # schedule.lr: its lr
    # data.root on experiments.transfer: transfer.data_root
    meant = meant or [k for k in known if k.rpartition(".")[2] == key.replace(".", "_")]
    siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == parent}
    if not parent and not prefix:  # trainers=cpu: a config group's name mistyped
        siblings |= {g: g for g in _groups(config_name)}
    close = difflib.get_close_matches(last, list(siblings), n=2, cutoff=0.6)  # a typo
    meant = meant or [siblings[name] for name in close]
    if not meant:
        return ""
    others = f" (or {', '.join(prefix + m for m in meant[1:])})" if len(meant) > 1 else ""
    return f" Did you mean {prefix}{meant[0]}={value}{others}?"


def _groups(config_name: str = "config") -> list[str]:
    """The config groups a primary config chooses from (its defaults list's)."""
    defaults = OmegaConf.load(CONF_DIR / f"{config_name}.yaml").defaults
    return [k for d in defaults if isinstance(d, DictConfig) for k in d if " " not in k]


def _command_overrides(arguments: Sequence[str]) -> list[tuple[str, str]]:
    """The command line's KEY=VALUE overrides (its flags left out), as (KEY, VALUE)."""
    pairs = (a.partition("=") for a in arguments if "=" in a and not a.startswith("-"))
    return [(key, value) for key, _, value in pairs]


def _is_group(key: str) -> bool:
    """Whether KEY=VALUE chooses one of the project's config groups (arch=..., experiment=...)."""
    return not key.startswith(("+", "~")) and (CONF_DIR / key).is_dir()


def _first_choice(key: str, value: str) -> str:
    """A group's override as the first job of a sweep composes it: the first of a comma list."""
    return f"{key}={value.split(',')[0]}"


def _split(arguments: Sequence[str]) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """(groups, changed): the command line's group choices as a sweep's first job composes them
    (hydra/ groups included), and its KEY=VALUE overrides of keys, hydra.KEY included; added or
    deleted keys and a group's package are neither."""
    groups, changed = [], []
    for key, value in _command_overrides(arguments):
        if key.startswith("hydra/") or _is_group(key):
            groups.append(_first_choice(key, value))
        elif not key.startswith(("+", "~")) and "/" not in key and "@" not in key:
            changed.append((key, value))
    return tuple(groups), changed


@functools.lru_cache(maxsize=8)
def _composed(groups: tuple[str, ...], hydra: bool, config_name: str) -> DictConfig:
    """compose_config, once per command line: its checks each read the same config (called with
    every argument by position, as the cache tells calls apart by how they were made)."""
    return compose_config(groups, hydra, config_name)


def _target(cfg: DictConfig, key: str) -> tuple[str, bool, list[str]] | None:
    """(`_target_`, whether it takes `key`'s last name, the closest name it takes) where `key`'s
    parent is an object's node, else None. Taken means named in its signature: **kwargs that a
    class hands on (a net's to its blocks) may refuse it further in, so they do not count."""
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else None
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    params = _parameters(node._target_)
    if params is None:  # no signature to read: say nothing of it
        return None
    return node._target_, name in params, difflib.get_close_matches(name, params, n=1)


def _parameters(target: str) -> list[str] | None:
    """The parameter names of the class or function `target` names; None where unreadable."""
    try:
        return list(inspect.signature(get_object(target)).parameters)
    except (ImportError, ValueError, TypeError):
        return None


def unknown_key_error(arguments: Sequence[str], config_name: str = "config") -> str | None:
    """Why Hydra would stop on KEY=VALUE for a key the config lacks: it answers "To append to
    your config use +KEY=VALUE", a key nothing would read, unless KEY is an option of an
    object's constructor (schedule.optimizer.nesterov: SGD takes it). The error names the key
    meant instead, or says to add the option with +; None where each such override's key is the
    config's or the config cannot be composed here (Hydra says why). `arguments`: the command
    line's; a hydra.KEY is looked up in Hydra's own config; `config_name`: the primary config
    (experiments.transfer's "transfer")."""
    groups, changed = _split(arguments)
    try:
        hydra = any(k.startswith("hydra.") for k, _ in changed)
        cfg = _composed(groups, False, config_name)
        hydra_cfg = _composed(groups, True, config_name) if hydra else None
    except Exception:  # Hydra's own message says why; no better one here
        return None
    for key, value in changed:
        if key.startswith("hydra."):
            if _has(hydra_cfg, key):
                continue
            parent, _, name = key.rpartition(".")
            node = OmegaConf.select(hydra_cfg, parent)
            if isinstance(node, DictConfig) and (
                not dataclasses.is_dataclass(OmegaConf.get_type(node)) or _plugin_reads(node, name)
            ):  # a dict Hydra reads whole (hydra.job.env_set), or a key its plugin reads
                return (
                    f"{key}={value}: Hydra's config does not list {key}: add it with +{key}={value}"
                )
            meant = _meant(hydra_cfg.hydra, key[6:], value, "hydra.")
            target = hydra_cfg.hydra.launcher.get("_target_", "").rpartition(".")[2]
            if not meant and key.startswith("hydra.launcher.") and target == "BasicLauncher":
                meant = f" The launcher is {target}: choose one first (hydra/launcher=joblib)."
            return f"{key}={value}: Hydra's config has no {key}.{meant}"
        if _has(cfg, key):
            continue
        parent, _, name = key.rpartition(".")
        if parent == "trainer" and name in RUN_LENGTH:
            return f"{key}={value}: {run_length_is_schedule(name)}"
        if harness_sets(key) and _has(cfg, parent):  # another entry point's config may lack it
            return (
                f"{key}={value}: the harness sets {name} itself, and Hydra's +{key}={value} "
                f"would be ignored{_instead(cfg, key, value)}"
            )
        target = _target(cfg, key)
        if target and target[1]:
            return (
                f"{key}={value}: the config does not list {key}, but {target[0]} takes it: add "
                f"it with +{key}={value}"
            )
        if target:
            close = f" Did you mean +{parent}.{target[2][0]}={value}?" if target[2] else ""
            meant = _meant(cfg, key, value, config_name=config_name)
            return f"{key}={value}: {target[0]} takes no {name}.{meant or close}"
        return (
            f"{key}={value}: the config has no {key}, and Hydra's +{key}={value} would add "
            f"one that nothing reads.{_meant(cfg, key, value, config_name=config_name)}"
        )
    return None


# Plugins that hand a node's every key on: joblib's launcher to joblib.Parallel (which takes or
# refuses it), submitit's to its executor, which refuses a parameter it lacks at launch.
_PLUGINS = "hydra_plugins.hydra_"
HANDED_ON = {
    f"{_PLUGINS}joblib_launcher.joblib_launcher.JoblibLauncher": "joblib.Parallel",
    f"{_PLUGINS}submitit_launcher.submitit_launcher.SlurmLauncher": None,
    f"{_PLUGINS}submitit_launcher.submitit_launcher.LocalLauncher": None,
}


def _plugin_reads(node: DictConfig, name: str) -> bool:
    """Whether a Hydra node with a `_target_` reads `name` though its dataclass lacks it: the
    object built from it takes it (an Optuna sampler's constant_liar), or hands every key on."""
    target = node.get("_target_")
    if not isinstance(target, str):
        return False
    if target in HANDED_ON and HANDED_ON[target] is None:
        return True
    return name in (_parameters(HANDED_ON.get(target) or target) or [])


def added_hydra_key_error(arguments: Sequence[str], config_name: str = "config") -> str | None:
    """Why a `+hydra.KEY=VALUE` on the command line would do nothing, or None. Hydra's own nodes
    (its launcher's, sweeper's, job's) are dataclasses whose fields their code reads; + adds a key
    beside them that nothing looks at (+hydra.launcher.n_job=1 left joblib at n_jobs -1). A key
    added to a dict node (hydra.job.env_set.NAME) is read. Checked before Hydra runs: in a sweep
    these keys configure the launch, which no job's own check sees. `arguments`: the command
    line's; the config groups among them (the first of a comma list) choose the launcher."""
    overrides = _command_overrides(arguments)
    added = [(k, v) for k, v in overrides if k.startswith(("+hydra.", "++hydra."))]
    if not added:
        return None
    try:
        hydra_cfg = _composed(_split(arguments)[0], True, config_name).hydra
    except Exception:  # Hydra's own run will say why
        return None
    for typed, value in added:
        override = f"{typed}={value}"
        key = typed.lstrip("+")
        parent, _, name = key.removeprefix("hydra").lstrip(".").rpartition(".")
        node = OmegaConf.select(hydra_cfg, parent) if parent else hydra_cfg
        if not isinstance(node, DictConfig) or name in node:
            continue  # a node Hydra fills at run time, or its own key, set with ++
        if _plugin_reads(node, name):
            continue
        fields = OmegaConf.get_type(node)
        if dataclasses.is_dataclass(fields):
            return (
                f"{override}: nothing reads {key}, so the run would go on as if it were not given "
                f"(Hydra's {typed[: -len(key)]} adds a key beside the fields of its "
                f"{fields.__name__}).{_meant(hydra_cfg, key[6:], value, 'hydra.')}"
            )
    return None


def _options(node: DictConfig) -> list[str]:
    """A node's options as a user sets them: its keys but Hydra's own (_target_, _partial_)."""
    return [str(k) for k in node if not str(k).startswith("_")]


def _node_given_a_value(cfg: DictConfig, key: str, value: str) -> str | None:
    """Why KEY=VALUE would replace a node of options (an object's: schedule.optimizer=0.05; the
    warm-up's: schedule.warmup=null) with one value, which fails late, mid-build; or None."""
    node = OmegaConf.select(cfg, key, default=None)
    if not isinstance(node, DictConfig) or value.lstrip().startswith("{"):
        return None
    options = _options(node)
    example = f": e.g. {key}.{options[0]}={value}" if options and value != "null" else ""
    return (
        f"{key}={value}: {key} is a node of options ({', '.join(options)}), not one "
        f"value; set one of them{example}"
    )


def command_line_error(arguments: Sequence[str], config_name: str = "config") -> str | None:
    """Why the command line would train something other than it says, found before Hydra runs
    (one line, or None): a `+hydra.KEY` no plugin reads (`added_hydra_key_error`), `arch_name`
    set (the arch file's label: the net stays the arch's), a node of options given one value.
    A key the config lacks (`unknown_key_error`), said in one line before Hydra says more. The
    config (`config_name`: experiments.transfer's "transfer") is composed with the command line's
    groups (the first of a comma list)."""
    _composed.cache_clear()  # this command line's config, composed afresh
    modes = _modes(arguments)
    if len(modes) > 1:  # Hydra's own refusal is a ValueError's traceback
        return (
            f"{' and '.join(modes)}: Hydra takes one of --run, --multirun, --cfg, --info at a "
            "time: --cfg job without -m shows one job's config (give each swept key one value)"
        )
    added = added_hydra_key_error(arguments, config_name)
    if added:
        return added
    overrides = _command_overrides(arguments)
    for key, value in overrides:
        if key.lstrip("+") == "arch_name":
            choices = _choices("arch")
            meant = f"arch={value}" if value in choices else f"arch= one of {', '.join(choices)}"
            return (
                f"{key}={value}: arch_name is the label the arch file gives its net (conf/arch/), "
                f"not the net: the run would train the arch's net under another name. Did you "
                f"mean {meant}?"
            )
        unknown = _unknown_choice(key, value)
        if unknown:
            return unknown
    groups, changed = _split(arguments)
    deleted = [a[1:].partition("=")[0] for a in arguments if a.startswith("~")]
    if changed or deleted:
        try:
            cfg = _composed(groups, False, config_name)
        except Exception:  # Hydra's own run will say why
            return None
        for key, value in changed:
            given = _node_given_a_value(cfg, key, value)
            if given:
                return given
        for key in deleted:
            if _deletes_what_is_read(cfg, key):
                return (
                    f"~{key}: the harness reads {key}, and without it a run fails part-way or "
                    f"takes a default unsaid: set {_set_instead(cfg, key)} instead"
                )
    return unknown_key_error(arguments, config_name)  # before Hydra's own multi-line refusal


def _unknown_choice(key: str, value: str) -> str | None:
    """Why a choice of one of the project's config groups (arch=resnt, experiment=smok, or one of
    a sweep's comma list) names no file of conf/KEY/, with the choices and the closest: Hydra's
    own refusal is a dozen lines with its search path. None for any other override, and for
    null, a list or a sweep function (choice(...), glob(...)), which Hydra reads itself, and for
    Hydra's own groups (hydra/launcher=joblib: its plugins add choices conf/ does not hold)."""
    if key.startswith("hydra") or not _is_group(key) or any(c in value for c in "([{"):
        return None
    choices = _choices(key)
    for one in value.split(","):
        if one not in choices and one != "null":
            close = difflib.get_close_matches(one, choices, n=1)
            meant = f" Did you mean {key}={close[0]}?" if close else ""
            return f"{key}={one}: no such {key} (conf/{key}/ holds {', '.join(choices)}).{meant}"
    return None


def _choices(group: str) -> list[str]:
    """The choices of one of the project's config groups: its files of conf/GROUP/, as named."""
    folder = CONF_DIR / group
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))


# Hydra's flags that choose what a command does, each with its short form
_MODES = {"--run": "-r", "--multirun": "-m", "--cfg": "-c", "--info": "-i"}


def _modes(arguments: Sequence[str]) -> list[str]:
    """The mode flags among `arguments` (--cfg=job as --cfg), each once, as typed."""
    named = {short: long for long, short in _MODES.items()}
    modes: dict[str, str] = {}
    for a in arguments:
        flag = a.partition("=")[0]
        long = named.get(flag, flag)
        if long in _MODES:
            modes.setdefault(long, flag)
    return list(modes.values())


def _set_instead(cfg: DictConfig, key: str) -> str:
    """What to set rather than delete `key`: a group's choice, a node's options, or a value."""
    if key == "arch_name":
        return "arch=NAME (its file gives the label)"
    if key in ("callbacks", "logger"):
        return f"{key}=none, or ~{key}.NAME for one of its entries"
    if _is_group(key):
        return f"{key}=NAME, a file of conf/{key}/,"
    now = OmegaConf.select(cfg, key)
    if isinstance(now, DictConfig):
        return f"one of its options ({', '.join(_options(now))})"
    return f"{key}=VALUE (now {OmegaConf.to_yaml({'v': now})[3:].strip()})"  # null, as typed


def _deletes_what_is_read(cfg: DictConfig, key: str) -> bool:
    """Whether Hydra's ~KEY would delete a key the harness reads: any but Hydra's own and those of
    a logger or callback the config adds (~callbacks.timer, ~logger.tensorboard.version: what
    Lightning reads of them has its defaults). An object's option with a constructor default is
    no exception: the harness reads some of those itself (data.root, data.batch_size), which
    then fail part-way."""
    if key.startswith("hydra") or not _has(cfg, key):
        return False  # Hydra's, or none to delete (Hydra says so)
    return not key.startswith(("callbacks.", "logger."))
