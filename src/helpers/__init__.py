"""Shared logic of the instruction-data scaling study.

The notebooks under ``notebooks/`` stay thin and call into these modules; the
runner (``python -m helpers run``) executes those notebooks with papermill.
"""
from __future__ import annotations



