"""The README's commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip().startswith("python3 -m venv .venv")]


def test_ci_runs_the_readme_test_command():
    ci = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines() if ln.startswith("python3 -m venv")]
    commands = _readme_commands()
    assert len(commands) == 2, "the README quickstart has exactly two commands (main job, tests)"
    assert ci == [commands[1]], f".ci/run must run the README's test command verbatim: {commands[1]!r}"
