"""The one progress record every long job yields, whatever the method."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Progress:
    """One optimisation (or processing) step done.

    ``losses`` holds each loss term by name; ``metrics`` validation figures when evaluated at
    this step (NMI, retrieval mAP, ...). ``epoch_end`` tells the job runner that a checkpoint
    is due. ``step`` counts steps within the epoch, ``global_step`` across the run.
    """

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    n_epochs: int | None = None
    steps_per_epoch: int | None = None
    losses: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    samples_per_s: float | None = None
    eta_s: float | None = None
    epoch_end: bool = False
    message: str = ""
    total_steps: int | None = None  # set when stages differ in steps per epoch

    @property
    def fraction(self) -> float | None:
        if self.total_steps:
            return min(1.0, self.global_step / self.total_steps)
        if not self.n_epochs or not self.steps_per_epoch:
            return None
        done = self.epoch * self.steps_per_epoch + self.step
        return min(1.0, done / (self.n_epochs * self.steps_per_epoch))

    def as_dict(self) -> dict:
        return asdict(self)


class RateMeter:
    """Samples/s and ETA from wall time, smoothed over the run so far."""

    def __init__(self, total_steps: int | None = None):
        import time

        self._time = time.perf_counter
        self.t0 = self._time()
        self.samples = 0
        self.steps = 0
        self.total_steps = total_steps

    def update(self, n_samples: int) -> tuple[float, float | None]:
        self.samples += n_samples
        self.steps += 1
        dt = max(self._time() - self.t0, 1e-9)
        rate = self.samples / dt
        eta = None
        if self.total_steps:
            eta = max(0.0, (self.total_steps - self.steps) * dt / self.steps)
        return rate, eta
