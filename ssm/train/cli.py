"""The training command: `python train.py ...` in a clone, or the `ssm-train` console script.

    ssm-train --config=configs/<task>.py[:preset] [--config.<section>.<field>=value ...] --workdir=DIR

Re-running with the same DIR resumes the run. Outputs: DIR/config.json, DIR/metrics.jsonl,
DIR/summary.json, DIR/checkpoints/, TensorBoard event files (see docs/training.md). Datasets on the Hugging
Face hub are reached as the environment allows (HF_DATASETS_OFFLINE=1 keeps `datasets` to its local cache;
docs/datasets.md). Every bad input is one line on stderr and exit status 2.
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


def parse_flags(argv):
    """absl flag parsing; a bad override is one line on stderr and exit status 2 (as every bad input)."""
    try:
        return flags.FLAGS(argv)
    except (KeyError, AttributeError) as e:  # ml_collections' error for an unknown field of a locked config
        found = re.search(r"\w+", str(e))  # the field name (ml_collections may add "Did you mean ...")
        name = found[0] if found else str(e)
        culprits = [a.split("=")[0] for a in argv if a.startswith("--config.") and
                    a.split("=")[0].split(".")[-1] == name] or [name]
        dotted = culprits[0].removeprefix("--config.")
        from ssm.train.model_config import unknown_field_message  # only now: `--help` stays fast

        hint = unknown_field_message(dotted)
        _usage_error(f"{_prog()}: error: {hint}" if hint else
                     f"{_prog()}: error: unknown config field {dotted!r} ({culprits[0]}); see the config file "
                     f"for the available fields")
    except flags.Error as e:  # a value of the wrong type, a missing flag, a bad config file or preset
        message = str(e)
        if "Traceback" in message:  # an exception inside the config file: keep its last line
            message = message.split(":", 1)[0] + ": " + message.strip().splitlines()[-1]
        _usage_error(f"{_prog()}: error: " + " ".join(message.split()))


def _usage_error(message: str):
    print(message, file=sys.stderr, flush=True)
    sys.exit(2)


# ------------------------------------------------------------------------------------------------- main
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
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
