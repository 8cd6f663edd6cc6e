"""User-level operations on a project, one function each: the CLI commands, the app's widgets
and the sample-project builder are thin callers of these.

Modules hold one area each (``runs``: run names and the run a command means; ``derive``:
import and the derived data a run reads; ``apply``: embed/project/cluster a trained run;
``place``: new samples against an existing run without touching what the user made;
``mapping``: Algorithm 1 and the effective per-sample prediction; ``projections``;
``evaluate``). Import from the submodules; this file stays import-cheap (no torch).
"""
