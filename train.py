"""Train a sequence model on one task (the same command as the installed `ssm-train`; ssm/train/cli.py).

    python train.py --config=configs/<task>.py[:preset] [--config.<section>.<field>=value ...] --workdir=DIR

Re-running with the same DIR resumes the run. Outputs: DIR/config.json, DIR/metrics.jsonl,
DIR/summary.json, DIR/checkpoints/, TensorBoard event files (see docs/training.md).
"""

from ssm.train.cli import run

if __name__ == "__main__":
    run()
