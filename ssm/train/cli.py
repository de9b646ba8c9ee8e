"""The training command: `python train.py ...` in a clone, or the `ssm-train` console script.

    ssm-train --config=configs/<task>.py[:preset] [--config.<section>.<field>=value ...] --workdir=DIR

Re-running with the same DIR resumes the run. Outputs: DIR/config.json, DIR/metrics.jsonl,
DIR/summary.json, DIR/checkpoints/, TensorBoard event files (see docs/training.md). Datasets on the Hugging
Face hub are reached as the environment allows (HF_DATASETS_OFFLINE=1 keeps `datasets` to its local cache;
docs/datasets.md). Every bad input is one line on stderr, before anything is built or written.

Exit status: 0 done (also --help); 2 bad input (a flag, a config field, the workdir, the data); 3 stopped
by train.nonfinite_policy (non-finite loss / gradient); 128 + N stopped by signal N (130 SIGINT, 143
SIGTERM) after saving a checkpoint; 1 a crash (a bug: Python's traceback).
"""

import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

# ------------------------------------------------------------------------------------------------ flags
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/<task>.py[:preset]); override fields with --config.a.b=value.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created, or resumed if it holds a run).")
flags.mark_flags_as_required(["config", "workdir"])


def _prog() -> str:
    return os.path.basename(sys.argv[0]) or "ssm-train"


HELP_FLAGS = ("help", "?", "helpshort", "helpfull", "helpxml")


def parse_flags(argv):
    """absl flag parsing; a bad override is one line on stderr and exit status 2 (as every bad input)."""
    try:
        return flags.FLAGS(argv)
    except SystemExit as e:  # absl's --help prints the usage, then exits with 1: asking for help is no error
        if e.code == 1 and any(a.split("=")[0].lstrip("-") in HELP_FLAGS for a in argv[1:]):
            sys.exit(0)
        raise
    except (KeyError, AttributeError) as e:  # ml_collections' error for an unknown field of a locked config
        found = re.search(r"\w+", str(e))  # the field name, then maybe 'Did you mean "d_model" instead of ...'
        name = found[0] if found else str(e)
        culprits = [a.split("=")[0] for a in argv if a.startswith("--config.") and
                    name in a.split("=")[0].split(".")[1:]] or [f"--config.{name}"]
        suggestion = re.search(r'Did you mean "(\w+)"', str(e))
        _unknown_field(culprits[0], name, suggestion[1] if suggestion else None)
    except flags.UnrecognizedFlagError as e:
        if e.flagname.startswith("config."):  # an unknown section: --config.modle.d_model
            _unknown_field(f"--{e.flagname}", None, None)
        _usage_error(f"{_prog()}: error: " + " ".join(str(e).split()))
    except flags.Error as e:  # a value of the wrong type, a missing flag, a bad config file or preset
        message = str(e)
        if "Traceback" in message:  # an exception inside the config file: keep its last line
            message = message.split(":", 1)[0] + ": " + message.strip().splitlines()[-1]
        _usage_error(f"{_prog()}: error: " + " ".join(message.split()))


def _unknown_field(flag: str, name: str | None, suggestion: str | None):
    """One line for --config.<dotted>=... naming a field the config does not have (`name`, one part of the
    dotted path), and the near miss ml_collections found for it."""
    dotted = flag.removeprefix("--config.")
    from ssm.train.model_config import unknown_field_message  # only now: `--help` stays fast

    hint = unknown_field_message(dotted)
    if hint:
        _usage_error(f"{_prog()}: error: {hint}")
    parts = dotted.split(".")
    if suggestion and name in parts:
        parts = parts[:parts.index(name)] + [suggestion] + parts[parts.index(name) + 1:]
    near = f"did you mean {'.'.join(parts)!r}?" if suggestion else "see the config file for the available fields"
    _usage_error(f"{_prog()}: error: unknown config field {dotted!r} ({flag}); {near}")


def _usage_error(message: str):
    print(message, file=sys.stderr, flush=True)
    sys.exit(2)


# ------------------------------------------------------------------------------------------------- main
def main(argv):
    if len(argv) > 1:
        _usage_error(f"{_prog()}: error: unexpected arguments: {' '.join(argv[1:])} (every setting is a "
                     f"--flag=value)")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO; --verbosity=0 shows them
    from ssm.checks import ConfigError  # after flag parsing: `--help` stays fast
    from ssm.train import train
    from ssm.train.guard import Interrupted, NonFiniteError

    try:
        config = _CONFIG.value.to_dict()
    except OSError as e:  # ml_collections loads the config file lazily
        _exit(f"{_prog()}: error: --config: {' '.join(str(e).split())}", 2)
    try:
        train(config, _WORKDIR.value)
    except ConfigError as e:  # bad input: one line, no traceback (other exceptions are bugs: traceback)
        _exit(f"{_prog()}: error: {e}", 2)
    except NonFiniteError as e:
        _exit(str(e), 3)
    except Interrupted as e:
        _exit(str(e), e.exit_code)


def _exit(message: str, code: int):
    print(" ".join(message.split("\n")), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)  # skip interpreter teardown (background checkpoint threads are already joined)


def run():
    """Console-script entry point. Config files import their shared parts (`from configs.base import ...`)
    relative to the current directory, as with `python -m`: run it from the folder holding configs/."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    main_module = sys.modules["__main__"]
    if not main_module.__doc__:  # absl's --help prints the main module's docstring
        main_module.__doc__ = __doc__
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
