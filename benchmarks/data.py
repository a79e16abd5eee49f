"""Generated GamGam files and the analysis-environment driver, shared by the cache and
H->yy figures, and how two rates measured in pairs are compared."""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.common import log
from sitefile.state import venv_bin

SOURCE_GOAL = 1.0
WALL_GOAL = 1.3
READ_GOAL = 0.95
HYY_GOAL = 0.85
GAMGAM_SEED = 20_250
DRIVER = Path(__file__).with_name("analysis_driver.py")
SAME_DISK_NOTE = (
    "the cache folder (<stack state>/cache) and the local copy (the benchmark's own folder "
    "under /tmp) are on the same file system and disk here, so this compares where the "
    "files live, not two kinds of storage"
)


class BenchData:
    """Generated GamGam files for the figures that read ROOT files, made on first use in
    the benchmark's own folder (removed at the end)."""

    def __init__(self, folder: Path, files: int, events: int) -> None:
        self.folder = folder
        self.files = files
        self.events = events
        self._gamgam: list[Path] | None = None

    def gamgam(self) -> list[Path]:
        if self._gamgam is None:
            from localstack.demo_data import generate_dataset

            began = time.monotonic()
            self._gamgam = generate_dataset(
                self.folder / "gamgam",
                n_files=self.files,
                n_events=self.events,
                seed=GAMGAM_SEED,
                progress=False,
                layout="GamGam",
            )
            log(
                f"generated {self.files} GamGam files x {self.events} events "
                f"in {time.monotonic() - began:.1f} s"
            )
        return self._gamgam


def analysis_driver(arguments: list[str], limit_s: float) -> dict:
    """Run ``analysis_driver.py`` in the analysis environment; return its JSON answer."""
    python = venv_bin("analysis", "python")
    if not python.is_file():
        raise RuntimeError(f"no analysis environment at {python} (scripts/ensure-env.sh)")
    done = subprocess.run(
        [str(python), str(DRIVER), *arguments],
        stdout=subprocess.PIPE,
        text=True,
        timeout=limit_s,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the analysis driver exited with {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def rate_ratios(events: list[int], top_s: list[float], bottom_s: list[float]) -> dict:
    """events/s of the ``top`` runs over events/s of the ``bottom`` runs, from runs
    made in pairs: ``top_s[i]`` and ``bottom_s[i]`` back to back, over ``events[i]``
    each.  ``paired_p50``, the median of the pairs' ratios, is the reported value: on
    two loaded cores the times jump between levels, and a pair shares its moment's load
    while two separate medians may land on different levels."""
    top = [e / t for e, t in zip(events, top_s, strict=True)]
    bottom = [e / t for e, t in zip(events, bottom_s, strict=True)]
    return {
        "paired_p50": statistics.median(a / b for a, b in zip(top, bottom, strict=True)),
        "of_medians": statistics.median(top) / statistics.median(bottom),
        "of_best": max(top) / max(bottom),
        "top_events_per_s_p50": statistics.median(top),
        "bottom_events_per_s_p50": statistics.median(bottom),
    }


PAIRED_NOTE = (
    "value = median over the repetitions of the ratio of the two runs made back to back "
    "in that repetition (which goes first alternates); of_medians = ratio of the two median "
    "rates, of_best = ratio of the two best runs"
)
