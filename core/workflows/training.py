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


# ---------------------------------------------------------------------- train -> resume -> apply
class LoadThenTrain:
    """A method's steps behind a first stage that loads its data, so loading a large cohort runs
    on the job's thread (and is cancelled like a step); ``data`` is kept for applying the run."""

    def __init__(self, method, project, dataset=None, data=None):
        self.method = method
        self.project = project
        self.dataset = dataset
        self.name = getattr(method, "name", type(method).__name__)
        self.data = data

    def get_params(self):
        return self.method.get_params()

    def state_dict(self):
        return self.method.state_dict()

    @property
    def device_(self):
        return getattr(self.method, "device_", "")

    def steps(self, data=None, *, resume=None):
        from ..jobs.progress import Progress
        from .runs import load_method_data

        if self.data is None:
            yield Progress(message="loading data")
            self.data = load_method_data(self.project, self.method, dataset=self.dataset)
            yield Progress(message=f"{len(self.data)} samples loaded; training")
        yield from self.method.steps(self.data, resume=resume)


def resumable_run(project, run_id: int, name: str, command: str = "train") -> dict:
    """The run a resume names, checked: same method, not still running elsewhere."""
    from ..jobs.recovery import process_alive, resume_command

    run = project.run(run_id)
    if run["method"] != name:
        raise ValueError(f"run {run_id} was trained with {run['method']}, not {name}; resume it with: "
                         + resume_command(project, run))
    if run["status"] in ("running", "cancelling"):
        pid, host = run.get("pid"), run.get("host") or "?"
        if pid is None or pid != pid or process_alive(pid, run.get("process_started")):
            raise ValueError(f"run {run_id} is still being trained (process {pid} on {host}); "
                             "cancel it there first")
    return run


class TrainingRun:
    """One run to train (or resume), then apply: ``TrainingRun(project, cls, params, resume=7)``.

    Resuming reads the run's checkpoint (inside the project, no code run), checks its method and
    merges its hyperparameters under ``params``; ``job(...)`` is the ``core.jobs.Job`` that
    creates (or reuses) the run row and checkpoint path and records the outcome (cancelled,
    diverged, failed; history.csv appended on resume); ``apply(job)`` embeds, projects and
    clusters a finished run. ``train_run`` does all three in the calling thread; the app runs
    ``task`` through its Qt job runner and ``apply`` in a second background job."""

    def __init__(self, project, cls, params: dict | None = None, *, dataset: str | None = None,
                 resume: int | None = None, name: str | None = None, command: str = "train",
                 check_resume: bool = True, load_data: bool = False):
        from ..jobs import load_run_checkpoint

        self.project = project
        self.dataset = dataset
        self.name = name or getattr(cls, "name", None) or cls.__name__
        params = dict(params or {})
        self.resume_state = None
        self.run_id = None
        if resume is not None:
            run = (resumable_run(project, resume, self.name, command) if check_resume
                   else project.run(resume))
            self.resume_state = load_run_checkpoint(project, run)
            params = {**run["params"], **params}
            self.run_id = int(resume)
        self.params = params
        self.method = cls(**params)
        data = None
        if load_data:
            from .runs import load_method_data

            data = load_method_data(project, self.method, dataset=dataset)
        self.task = LoadThenTrain(self.method, project, dataset, data=data)

    @property
    def data(self):
        return self.task.data

    def job_kwargs(self) -> dict:
        return dict(project=self.project, resume=self.resume_state, name=self.name, run_id=self.run_id)

    def job(self, **callbacks) -> Job:
        """The ``Job`` training this run (``on_progress`` / ``on_status`` as given): the method on
        its data when loaded already, else the method behind a data-loading stage."""
        if self.task.data is not None:
            from ..jobs import distributed

            # under torchrun: this rank's job (rank 0 records the run; a cancel stops every rank)
            make = distributed.RankJob if distributed.launched() else Job
            return make(self.method, self.task.data, **self.job_kwargs(), **callbacks)
        return Job(self.task, None, **self.job_kwargs(), **callbacks)

    def can_apply(self, embed: bool = True) -> bool:
        return embed and hasattr(self.method, "transform") and self.data is not None

    def apply(self, job, *, embed: bool = True) -> list[str]:
        """After a finished job: embed, project and cluster (``apply_run``), or only the
        method's own outputs when it does not embed (or ``embed`` is False). Raises
        ``ValueError`` (e.g. a collapsed embedding) for a run that is not usable."""
        from ..jobs import FINISHED
        from .apply import apply_run, save_outputs

        if job.status != FINISHED:
            raise ValueError(f"run {job.run_id} {job.status}: nothing to apply")
        if self.can_apply(embed):
            return apply_run(self.project, self.method, job.run_id, dataset=self.dataset, data=self.data)
        return save_outputs(self.project, self.method, job.run_id)


def train_run(project, cls, params: dict | None = None, *, dataset: str | None = None,
              resume: int | None = None, embed: bool = True, on_progress=None, on_job=None,
              command: str = "train", name: str | None = None, apply: bool = True):
    """Train (or resume) ``cls`` on ``project`` in this thread and apply the finished run.

    ``on_job(job)`` is called before training starts (e.g. to cancel it on Ctrl-C) and returns a
    function called after it ends; ``apply=False`` skips applying (e.g. on a rank other than
    the first of a distributed run). Returns ``(run, job, summary)``: ``summary`` is the applied
    run's lines, or None when the job did not finish; a collapsed or diverged embedding raises
    ``core.methods.base.Diverged``."""
    run = TrainingRun(project, cls, params, dataset=dataset, resume=resume, command=command, name=name,
                      load_data=True)
    job = run.job(on_progress=on_progress)
    after = on_job(job) if on_job is not None else None
    try:
        job.run(raise_errors=False)  # the outcome is job.status / job.message, whatever it is
    finally:
        if after is not None:
            after()
    from ..jobs import FINISHED

    summary = run.apply(job, embed=embed) if apply and job.status == FINISHED else None
    return run, job, summary
