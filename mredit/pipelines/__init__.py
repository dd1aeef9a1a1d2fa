"""Sampling: the one editing pipeline (``RewardEditPipeline``, a diffusers ``DiffusionPipeline``), its schedulers
and input sizing. Training previews, ``mredit edit``, Lightning ``predict`` and SmartEdit all sample through it."""
