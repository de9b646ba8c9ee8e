"""Train a sequence model on one task.

    python train.py --config=configs/<task>.py[:preset] [--config.<section>.<field>=value ...] --workdir=DIR

Re-running with the same DIR resumes the run. Outputs: DIR/config.json, DIR/metrics.jsonl,
DIR/summary.json, DIR/checkpoints/ (see docs/training.md). Datasets on the Hugging Face hub are reached
as the environment allows (HF_DATASETS_OFFLINE=1 keeps `datasets` to its local cache; docs/datasets.md).
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
        _usage_error(f"train.py: error: {hint}" if hint else
                     f"train.py: unknown config field {dotted!r} ({culprits[0]}); see the config file for the "
                     f"available fields")
    except flags.Error as e:  # a value of the wrong type, a missing flag, a bad config file or preset
        message = str(e)
        if "Traceback" in message:  # an exception inside the config file: keep its last line
            message = message.split(":", 1)[0] + ": " + message.strip().splitlines()[-1]
        _usage_error("train.py: error: " + " ".join(message.split()))


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
        _exit(f"train.py: error: --config: {' '.join(str(e).split())}", 2)
    try:
        train(config, _WORKDIR.value)
    except ConfigError as e:  # bad input: one line, no traceback (other exceptions are bugs: traceback)
        _exit(f"train.py: error: {e}", 2)
    except NonFiniteError as e:
        _exit(str(e), 3)
    except Interrupted as e:
        _exit(str(e), e.exit_code)


def _exit(message: str, code: int):
    print(" ".join(message.split("\n")), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)  # skip interpreter teardown (background checkpoint threads are already joined)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
