"""Analysis: transfer functions and impulse responses of linear SSMs (float64 NumPy), run plots, and closed-form
positive controls (hand-set weights with which the real model solves parity / group word problems exactly)."""
