"""Transfer a zoo model to other classes with few labels (depthsweep.apps.transfer):

    python -m experiments.transfer transfer.source=RUN_DIR_OR_CKPT transfer.freeze=all
    python -m experiments.transfer -m transfer.source=RUN_DIR_OR_CKPT \
        transfer.labels_per_class=10,50,200 transfer.freeze=all,last_stage,none,scratch

Each run records its result in its run directory's run.json (skipped once done, as a training run
is); a sweep also writes transfer.csv and transfer.png/.svg into its sweep directory. Options:
conf/transfer.yaml, conf/transfer/.
"""

import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, OverrideType, ValueType
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from depthsweep.apps import zoo
from depthsweep.apps.transfer import SOURCE_REQUIRED, transfer
from depthsweep.errors import USER_ERROR, UserError
from depthsweep.training.config import CONF_DIR, home_expanded
from depthsweep.training.overrides import check_added_keys, command_line_error, unread
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


DEFAULTS = OmegaConf.load(CONF_DIR / "transfer" / "default.yaml")  # transfer's own options


def unread_key_error(arguments: Sequence[str]) -> str | None:
    """Why KEY=VALUE would do nothing but name the run's directory: a schedule key that a
    transfer never reads (training.overrides.UNREAD: the warm-up); or None."""
    for arg in arguments:
        key, sep, _ = arg.partition("=")
        if sep and not arg.startswith("-") and unread(key.lstrip("+"), "transfer"):
            return (
                f"{arg}: a transfer trains without a warm-up (schedule.warmup is the deep training "
                "runs' recipe), so the run would train as if it were not given"
            )
    return None


def _sources(arguments: Sequence[str]) -> list[str] | None:
    """The transfer.source values of a command line ([] where none is given), each of a sweep's;
    None where they are not plain paths to check here (another config, a mode that trains
    nothing, an interpolation, a glob or range sweep, a line Hydra cannot parse): the job checks
    then."""
    if any(a.startswith("-") and a not in ("-m", "--multirun", "-r", "--run") for a in arguments):
        return None  # --cfg, --help, -cn ...: another config, or nothing trained
    try:
        overrides = OverridesParser.create().parse_overrides(
            [a for a in arguments if not a.startswith("-")]
        )
    except Exception:  # Hydra's own message says why
        return None
    sources: list[str] = []
    for o in overrides:
        if o.key_or_group != "transfer.source" or o.type == OverrideType.DEL:
            continue
        value = o.value()
        if o.value_type == ValueType.ELEMENT:
            values = [value]
        elif isinstance(value, ChoiceSweep):  # quoted strings come as QuotedString
            values = [getattr(v, "text", v) for v in value.list]
        else:
            return None
        if any(isinstance(v, str) and "${" in v for v in values):
            return None
        sources += ["" if v is None else str(v) for v in values]
    return sources


def source_error(arguments: Sequence[str]) -> str | None:
    """Why the command line's transfer.source cannot be transferred from (none given, no such
    path, not a checkpoint, an arch not installed here), or None; a fault in reading it ends
    the process (experiments.exits.unexpected_error). Said before Hydra writes anything: a run
    directory's name leaves the source out, so Hydra's .hydra/ and log would go into one that
    may hold another source's run."""
    sources = _sources(arguments)
    if sources is None:
        return None
    # None on the command line: the job decides where another config may set it (transfer=NAME,
    # hydra.searchpath), else conf/transfer/default.yaml's (??? unless edited) says
    elsewhere = any(a.startswith(("transfer=", "hydra.searchpath")) for a in arguments)
    if not sources and (elsewhere or not OmegaConf.is_missing(DEFAULTS, "source")):
        return None
    if not sources or "" in sources:
        return SOURCE_REQUIRED
    for source in dict.fromkeys(sources):
        try:
            zoo.load(source)
        except UserError as e:
            return str(e)
        except Exception as e:  # a fault no check foresaw (exit 1): still nothing written
            unexpected_error(e, [Path(source)])
    return None


if __name__ == "__main__":
    sys.argv = home_expanded(sys.argv)
    arguments = sys.argv[1:]
    # One line, before Hydra's several, and before it writes anything
    refused = unread_key_error(arguments) or command_line_error(arguments, "transfer")
    # A +KEY or ++KEY is checked in the job, against the composed config, before the source is
    # read there: the source waits for it, so that the key's error comes first either way
    if not refused and not any(a.startswith("+") for a in arguments):
        refused = source_error(arguments)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        raise SystemExit(USER_ERROR)
    main()
