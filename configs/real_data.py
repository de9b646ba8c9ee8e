"""Config sections for real datasets (the `hf_dataset` task, docs/datasets.md).

    c = base_config()
    dataset_section(c, "scifar")                                   # a named benchmark (ssm/tasks/hf_dataset/benchmarks.py)
    dataset_section(c, dataset="my/hub-dataset", input_field="sentence", preprocess="bytes", max_length=512)

Every option of ssm.tasks.hf_dataset.DatasetSpec becomes a `data.<option>` field (so each can be set with
--config.data.<option>=...); num_train / num_validation / num_test become caps, 0 = the whole split.
"""

import dataclasses

from ssm.tasks.hf_dataset import DatasetSpec
from ssm.tasks.hf_dataset.benchmarks import BENCHMARKS


def dataset_section(c, benchmark: str = "", **options):
    """Fill c.data for the hf_dataset task: the spec's defaults, then the benchmark's, then `options`."""
    if benchmark and benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark: expected one of {', '.join(BENCHMARKS)}, got {benchmark!r}")
    c.data.task = "hf_dataset"
    values = {f.name: f.default for f in dataclasses.fields(DatasetSpec)}
    values.update(BENCHMARKS[benchmark]() if benchmark else {}, **options)
    for name, value in values.items():
        setattr(c.data, name, tuple(value) if isinstance(value, (list, tuple)) else value)
    c.data.num_train = c.data.num_validation = c.data.num_test = 0
    return c
