"""User-level operations on a project, one function each: the CLI commands, the app's widgets
and the sample-project builder are thin callers of these.

Modules hold one area each: ``runs`` (the run a command means, its method from its
checkpoint, the data it reads; names and array keys are spelled in
``core.project.accessors``); ``derive`` (import and derive: point clouds and meshes of new
shapes, structures of label maps, what is missing); ``training`` (a training job inside a
workflow); ``apply`` (embed, project and cluster with a trained run, never replacing a
clustering); ``place`` (new samples against a run: nearest cluster, prediction with support,
k nearest known cases; nothing the user made is touched); ``clustering`` (first clustering,
undoable re-clustering, centroids); ``mapping`` (Algorithm 1 and the effective prediction);
``projections`` (PCA with its parameters, UMAP); ``tasks`` (a workflow generator as a job);
``baseline`` (a first map before training). Evaluation against a run's own clustering is
``core.evaluation.evaluate_run``. Import from the submodules; this file stays import-cheap.
"""
