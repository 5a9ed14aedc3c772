"""The tutorial (numerics/tutorial.py) runs from top to bottom, with a smaller
simulation, and its two stated comparisons pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "numerics" / "tutorial.py"


def test_the_tutorial_runs(tmp_path):
    figure = tmp_path / "phase.png"
    env = {**os.environ, "TUTORIAL_REPLICATES": "24", "TUTORIAL_FIGURE": str(figure), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(TUTORIAL)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert figure.stat().st_size > 1000
    # both stated comparisons print their verdict (featfate_sym.stats.Comparison); both pass
    verdicts = [line for line in proc.stdout.splitlines() if " vs theory " in line]
    assert len(verdicts) == 2 and all(v.endswith(": passed") for v in verdicts), proc.stdout
