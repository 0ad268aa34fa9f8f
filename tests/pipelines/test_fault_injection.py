"""The short fault-injection run (CI): stage-2 training and sampling, each SIGKILLed at seeded random moments and
rerun; the results equal an uninterrupted run's bit for bit and nothing is left behind (pipelines/fault_injection.py
runs every stage, longer)."""

import random
import shutil
import subprocess
import sys

from pipelines.fault_harness import kill_and_rerun, leftovers, run_once
from pipelines.fault_injection import ENV, ROOT, run_all, table


def test_killed_training_and_sampling_end_as_if_never_killed(tiny_pipeline_run, tmp_path):
    start = tmp_path / "start"
    shutil.copytree(tiny_pipeline_run, start, ignore=shutil.ignore_patterns("diffusion", "guide", "samples"))
    reports = run_all(tmp_path / "work", ["diffusion", "sample"], kills=2, seed=0, start=start)
    print(table(reports))
    for report in reports:
        assert report.leftovers == [], report
        assert report.max_abs_diff == 0.0, report  # bit-exact on the CPU
    assert sum(r.kills for r in reports) >= 2  # the kills happened (each stage's first one always lands)


def test_the_harness_sees_a_kill_and_what_it_leaves(tmp_path):
    """A command that writes a folder atomically, killed inside the write: the kill is counted, its temporary is
    found, and the rerun (the next write into the folder) removes it."""
    script = ("import sys; from runfs import atomic_dir\n"
              "with atomic_dir(sys.argv[1]) as d:\n    (d / 'x').write_text('1')\n")
    command = [sys.executable, "-c", script, str(tmp_path / "out" / "folder")]
    seconds, visits = run_once(command, cwd=ROOT, env=ENV, log_path=tmp_path / "log")
    assert visits == {"written": 1}
    killed = subprocess.run(command, cwd=ROOT, env={**ENV, "KTLDM_KILL_AT": "written:1"})
    assert killed.returncode == -9 and len(leftovers(tmp_path / "out")) == 1  # the killed write's temporary
    log = kill_and_rerun(command, cwd=ROOT, env=ENV, kills=1, window=(0, seconds), visits=visits,
                         rng=random.Random(0), log_path=tmp_path / "log", point_share=1.0)
    assert log.killed == 1 and log.attempts == ["written:1: killed"]
    assert leftovers(tmp_path / "out") == [] and (tmp_path / "out" / "folder" / "x").read_text() == "1"
