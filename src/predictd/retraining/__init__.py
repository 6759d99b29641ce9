"""Retraining: a candidate from registered training data and labelled feedback, scored
against production and registered unstaged, taking no traffic until staged (`predictd train`,
and the server's schedule)."""

from predictd.retraining.options import RetrainOptions, RetrainResult, parse_params
from predictd.retraining.schedule import retrain_forever, run_due
from predictd.retraining.service import retrain

__all__ = [
    "RetrainOptions",
    "RetrainResult",
    "parse_params",
    "retrain",
    "retrain_forever",
    "run_due",
]
