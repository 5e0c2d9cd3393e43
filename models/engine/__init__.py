"""How a run is driven: run configs and their checks (``config.py``, ``config_checks.py``), building the
segmentor of a run (``builder.py``), the training loop (``train.py``), evaluation (``evaluate.py``), SGR analysis
(``analyze.py``), the work dir and run log (``workdir.py``, ``runlog.py``), distributed runs (``distributed.py``),
optimizer and schedule (``optim.py``) and metrics (``metrics.py``). The command line is :mod:`semask_models.cli`."""
