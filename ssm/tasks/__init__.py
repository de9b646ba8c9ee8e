"""Synthetic and text tasks as plain NumPy generators: `make_<task>(rng, n, **params) -> dict of arrays`.

Every generator returns (all padded to a fixed length T, 0 is always the padding token):

* `inputs`  (n, T) int32 token ids in [0, vocab_size);
* `lengths` (n,)   int32 number of real tokens (positions >= length are padding);
* `targets` (n, T) int32 per-token labels, or (n,) for sequence classification (`output="pooled"`);
* `weights` same shape as targets, float32: which targets count in the loss/metrics (e.g. only the answer
  token for parity).

The generators are the unit-tested source of truth; `ssm.train.data` caches them as `datasets.Dataset`s.
"""

from ssm.tasks.char_lm import make_char_lm
from ssm.tasks.formal import make_mod_arithmetic, make_parity
from ssm.tasks.listops import make_listops
from ssm.tasks.mqar import make_mqar
from ssm.tasks.word_problem import make_word_problem

__all__ = ["make_parity", "make_mod_arithmetic", "make_word_problem", "make_mqar", "make_listops",
           "make_char_lm"]
