"""Run logging (ssm/train/loggers.py): TensorBoard event files hold every scalar of metrics.jsonl (also after a
resume), console lines off a terminal, tokens_per_s without compilation, the environment record, W&B offline."""

import glob
import io
import json
import os
import struct

import numpy as np
import pytest

from ssm.checks import ConfigError
from ssm.train import train
from ssm.train.loggers import Console, Throughput, check_logging_config, scalars
from tests.test_train import get_config


# ------------------------------------------------------------------------------- event-file reader
def read_events(workdir):
    """Every Event in DIR/events.out.tfevents.* (files in name order, i.e. creation time), parsed from the
    TFRecord framing (u64 length, u32 crc, data, u32 crc) with the protobuf classes tensorboardX ships."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))):
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            events.append(Event.FromString(data[pos + 12:pos + 12 + length]))
            pos += 12 + length + 4
        assert pos == len(data), f"{path}: trailing bytes"
    return events


def tensorboard_scalars(workdir) -> dict:
    """{(tag, step): value} as TensorBoard shows it: a SessionLog START at step s drops earlier events with
    step >= s (TensorBoard's purge of orphaned data after a restart)."""
    from tensorboardX.proto.event_pb2 import SessionLog

    out = {}
    for event in read_events(workdir):
        if event.HasField("session_log") and event.session_log.status == SessionLog.START:
            out = {k: v for k, v in out.items() if k[1] < event.step}
        for value in event.summary.value:
            if value.HasField("simple_value"):
                out[(value.tag, event.step)] = value.simple_value
    return out


def jsonl_scalars(workdir) -> dict:
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return {(f"{r['split']}/{tag}", r["step"]): v for r in records
            for tag, v in scalars({k: x for k, x in r.items() if k not in ("step", "split")}).items()}


def assert_same_scalars(actual: dict, expected: dict):
    assert set(actual) == set(expected), set(actual) ^ set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, rtol=1e-6, err_msg=str(key))  # float32 in the file


# ------------------------------------------------------------------------------------------ end to end
def test_run_logs_tensorboard_console_and_throughput(tmp_path, capsys):
    """One smoke run and its resume (in-process: stdout is not a terminal)."""
    workdir = str(tmp_path / "run")
    overrides = dict(model__mixer="diag", train__num_steps=10, train__log_every=5, train__eval_every=5,
                     train__progress_bar=True, data__data_dir=str(tmp_path / "data"))
    summary = train(get_config("parity", **overrides), workdir)
    out, err = capsys.readouterr()

    # TensorBoard: every scalar of metrics.jsonl, at its step, and the config as hyperparameters
    first = jsonl_scalars(workdir)
    assert ("test/accuracy_by_length/40-45", 10) in first and ("train/tokens_per_s", 5) in first
    assert_same_scalars(tensorboard_scalars(workdir), first)
    plugins = {v.tag: v.metadata.plugin_data for e in read_events(workdir) for v in e.summary.value}
    assert plugins["_hparams_/session_start_info"].plugin_name == "hparams"
    assert b"model.d_model" in plugins["_hparams_/session_start_info"].content
    assert "_hparams_/session_end_info" in plugins

    # console, not a terminal: one line per train window and per evaluation, no bar, no carriage return
    lines = [line for line in out.splitlines() if line.startswith("parity/diag step ")]
    assert [line.split(":")[0] for line in lines] == [
        "parity/diag step 5/10 train", "parity/diag step 5/10 validation", "parity/diag step 10/10 train",
        "parity/diag step 10/10 validation", "parity/diag step 10/10 test"]
    assert f"accuracy {summary['test']['accuracy']:.4g}" in lines[-1]
    assert "\r" not in out + err and "it/s" not in err

    # tokens_per_s: the first window's only untimed step is the compiling one, so its rate is that of the
    # second window (within noise), not ~100× lower as when compilation was counted
    rates = [json.loads(line)["tokens_per_s"] for line in open(os.path.join(workdir, "metrics.jsonl"))
             if '"train"' in line]
    assert len(rates) == 2 and rates[0] > rates[1] / 10, rates

    # environment in config.json and summary.json
    import jax
    for name in ("config.json", "summary.json"):
        env = json.load(open(os.path.join(workdir, name)))["environment"]
        assert env["packages"]["jax"] == jax.__version__ and env["device_count"] == jax.device_count()
        assert env["device_kind"] == jax.devices()[0].device_kind and env["python"].count(".") == 2
        assert len(env.get("git_commit", "0" * 40)) == 40

    # resume to step 12: the new file purges what followed the checkpoint; TensorBoard then shows the
    # resumed metrics.jsonl plus the first run's final test record (metrics.jsonl drops it, being rewritten)
    train(get_config("parity", **{**overrides, "train__num_steps": 12}), workdir)
    expected = {**jsonl_scalars(workdir), **{k: v for k, v in first.items() if k[0].startswith("test/")}}
    assert ("train/loss", 12) in expected
    assert_same_scalars(tensorboard_scalars(workdir), expected)


def read_wandb_records(path):
    """The protobuf records of an offline W&B run file: a 7-byte header (":W&B", magic, version), then
    LevelDB-log framing (32 KiB blocks; per fragment crc32c u32, length u16, type u8: 1 full, 2 first,
    3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, records, pending = 7, [], b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer padding
            pos += 32768 - pos % 32768
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(pb.Record.FromString(pending))
            pending = b""
    return records


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_run(tmp_path, monkeypatch):
    """train.wandb=True, wandb_mode=offline: the run file holds every scalar of metrics.jsonl at its step,
    the config, and the summary."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    workdir = str(tmp_path / "run")
    config = get_config("parity", model__mixer="diag", train__num_steps=2, train__wandb=True,
                        train__wandb_mode="offline", data__data_dir=str(tmp_path / "data"))
    summary = train(config, workdir)
    assert wandb.run is None  # finished
    run_id = open(os.path.join(workdir, "wandb_run_id")).read().strip()
    (path,) = glob.glob(os.path.join(workdir, "wandb", f"offline-run-*-{run_id}", f"run-{run_id}.wandb"))
    records = read_wandb_records(path)
    history, last_summary, logged_config = {}, {}, {}
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind == "history":
            items = {_key(i): json.loads(i.value_json) for i in r.history.item}
            history.update({(k, r.history.step.num): v for k, v in items.items() if not k.startswith("_")})
        elif kind == "summary":
            last_summary.update({_key(i): json.loads(i.value_json) for i in r.summary.update})
        elif kind == "run":
            logged_config = {i.key: json.loads(i.value_json) for i in r.run.config.update}
    assert_same_scalars(history, jsonl_scalars(workdir))
    assert logged_config["model"]["d_model"] == config["model"]["d_model"] == 16
    assert last_summary["best/step"] == summary["best"]["step"]
    assert last_summary["test/accuracy"] == pytest.approx(summary["test"]["accuracy"], rel=1e-12)


# ------------------------------------------------------------------------------------------ units
def test_throughput_clock_counts_only_running_time():
    now = [0.0]
    clock = Throughput(clock=lambda: now[0])
    clock.count(100)                        # not started (the compiling step): not counted
    assert clock.take() == {}
    clock.start()
    now[0] = 2.0
    clock.count(100)
    clock.pause()                           # evaluation from t=2 to t=7: not counted
    now[0] = 7.0
    clock.count(50)
    clock.start()
    now[0] = 8.0
    clock.count(200)
    assert clock.take() == {"tokens_per_s": 300 / 3.0}
    now[0] = 9.0
    clock.count(10)
    assert clock.take() == {"tokens_per_s": 10.0}  # take() restarted the window at t=8


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("tty", [False, True])
def test_console_bar_only_on_a_terminal(tty):
    stream = _Stream(tty)
    console = Console(total=4, start=0, desc="t/m", progress_bar=True, stream=stream)
    for step in range(1, 5):
        console.advance()
        console.write(step, "train", {"loss": 1.0 / step, "tokens_per_s": 1234.5})
    console.write(4, "validation", {"loss": 0.5, "accuracy_by_length": {"1-2": 1.0}})
    console.close()
    text = stream.getvalue()
    assert "t/m step 4/4 validation: loss 0.5\n" in text  # nested metrics stay off the console
    if tty:
        assert "\r" in text and "t/m step 1/4 train" not in text
    else:
        assert "\r" not in text
        assert text.splitlines()[:2] == ["t/m step 1/4 train: loss 1, tokens_per_s 1234",
                                         "t/m step 2/4 train: loss 0.5, tokens_per_s 1234, eta 0:00:00"]


@pytest.mark.parametrize("field, value, message", [
    ("tensorboard", "yes", "train.tensorboard: expected True or False"),
    ("wandb_mode", "offlne", "train.wandb_mode: expected one of"),
    ("wandb_project", 3, "train.wandb_project: expected a string"),
])
def test_bad_logging_fields(field, value, message):
    with pytest.raises(ConfigError, match=message):
        check_logging_config({field: value})


def test_wandb_asked_for_but_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "wandb" else real_import(name, *a, **k))
    with pytest.raises(ConfigError, match=r"train.wandb: needs the wandb package \(pip install wandb\)"):
        check_logging_config({"wandb": True})


def test_several_seeds_tensorboard_runs_and_console_spread(tmp_path):
    """A record of 2 replicas: TensorBoard gets the mean in DIR and each replica's values under the same tags in
    DIR/seeds/seed_<s> (one TensorBoard run per seed); the console line shows mean [min, max]."""
    from ssm.train.loggers import TensorBoardLog
    from ssm.train.replicas import as_record

    record = as_record([{"loss": 1.0, "accuracy": 0.5}, {"loss": 3.0, "accuracy": 1.0}], [4, 5])
    log = TensorBoardLog(str(tmp_path), get_config("parity"), start_step=0)
    log.write(7, "validation", record)
    log.close()
    assert tensorboard_scalars(tmp_path) == {("validation/loss", 7): 2.0, ("validation/accuracy", 7): 0.75}
    for seed, loss, accuracy in ((4, 1.0, 0.5), (5, 3.0, 1.0)):
        assert tensorboard_scalars(tmp_path / "seeds" / f"seed_{seed}") == {("validation/loss", 7): loss,
                                                                             ("validation/accuracy", 7): accuracy}
    stream = _Stream(False)
    Console(total=9, start=0, desc="t/m", progress_bar=False, stream=stream).write(7, "validation", record)
    assert stream.getvalue() == ("t/m step 7/9 validation (mean [min, max] of 2 seeds): loss 2 [1, 3], "
                                 "accuracy 0.75 [0.5, 1]\n")
