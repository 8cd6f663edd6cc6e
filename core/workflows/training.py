"""Training as a workflow step generator: a ``core.jobs.Job`` (run record, checkpoints, resume,
its cancel and failure handling) driven from a generator, so a training stage can sit inside
a longer workflow (the sample project: import, train, apply, map) run by one runner."""
from __future__ import annotations

import queue

from ..jobs import FAILED, Job


def train_steps(project, method, data, *, name: str | None = None, resume=None, run_id: int | None = None):
    """Generator: the job's Progress records as they come; closing it cancels the job (within
    one step) and waits for its checkpoint. Returns the finished ``Job``; re-raises its error."""
    q: queue.Queue = queue.Queue()
    job = Job(method, data, project=project, resume=resume, run_id=run_id, name=name,
              on_progress=q.put, on_status=lambda s: None)
    job.start()
    try:
        while True:
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                if job.wait(0):
                    while not q.empty():
                        yield q.get()
                    break
                continue
            yield item
    finally:
        if not job.wait(0):
            job.cancel()
            job.wait()
    if job.status == FAILED and job.error is not None:
        raise job.error
    return job
