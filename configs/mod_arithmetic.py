"""Modular arithmetic mod 5 (Deletang et al., 2023; Grazzi et al., 2025), with or without brackets
(`--config.data.brackets=True`): train on lengths 3–40, validate/test on 40–256, answer at the last token.
"""

from configs.base import check_preset, formal_language_config

PRESETS = ("default", "smoke", "paper")


def get_config(preset: str = ""):
    preset = check_preset(preset, PRESETS)
    c = formal_language_config("mod_arithmetic", preset, num_steps=1000)
    c.data.modulus = 5
    c.data.brackets = False
    c.data.mult = False               # brackets only: also use '*' (Deletang et al. default: + and - only)
    return c
