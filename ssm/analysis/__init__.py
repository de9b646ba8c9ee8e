"""Analysis: transfer functions and impulse responses of linear SSMs (float64 NumPy), and run plots."""
