"""A test-only method: the median, after a pause, so a run lasts long enough to be interrupted.

Importable by Dask workers started by ``tests/servers/dask.py`` (the repository is on their path).
"""

from __future__ import annotations

import time

from cloudfree.composite import make_compositor


class SlowMedian:
    """The median of each band, ``seconds`` after being asked."""

    name = "slow-median"

    def __init__(self, seconds: float | str = 0.5) -> None:
        self.seconds = float(seconds)
        self._median = make_compositor("median", {})

    @property
    def output(self):
        return self._median.output

    @property
    def provenance(self):
        return self._median.provenance

    def context_m(self):
        return self._median.context_m()

    def __call__(self, obs):
        time.sleep(self.seconds)
        return self._median(obs)

    def describe(self):
        return self._median.describe()
