"""Rehearse a study config on the CPU before renting GPUs: its own code path (architecture, launcher, engines,
judge client) end to end at shrunk sizes, with the real sizes' projections beside it (``python -m helpers rehearse``)."""
