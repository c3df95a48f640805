"""The search, step by step: settings (``config``), the run directory
(``rundir``), the steps (``steps``: one-shot training, samples, export),
which path counts to fine-tune (``sampling``, ``tuning``), the accuracy
predictors (``predictors``, ``curves``), the choice by budget (``budget``),
the dense reference (``reference``) and ``run``, which orchestrates them.
``bench`` and ``workflows`` are the work behind ``mpath-tf bench``,
``derive`` and ``export`` on a finished run.
"""
