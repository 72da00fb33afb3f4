"""Runs: the run directory and the jobs that read or fill it.

- :mod:`ddpmlab.runs.layout`: the files of a run directory, their I/O and checks.
- :mod:`ddpmlab.runs.run`: :class:`~ddpmlab.runs.run.Run` and ``open_run``: sampling.
- :mod:`ddpmlab.runs.training`: ``train_run``.
- :mod:`ddpmlab.runs.evaluation`: ``score``, ``evaluate_run``, per-class ``score_classes``.
- :mod:`ddpmlab.runs.likelihood`: the bound and the exact likelihood.
- :mod:`ddpmlab.runs.sweep`: samplers x step counts.
- :mod:`ddpmlab.runs.figures`: the figures and the GIF, drawn by ``ddpmlab.reports``.

Nothing is imported here: ``ddpmlab sample`` loads :mod:`~ddpmlab.runs.run` without the
metrics and figures that evaluation and training pull in (scipy, scikit-learn, POT,
matplotlib).
"""
