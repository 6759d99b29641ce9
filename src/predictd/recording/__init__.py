"""Durable, off-the-request-path recording of predictions."""

from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.recorder import PredictionRecorder, RecorderState
from predictd.recording.repository import PredictionWriter
from predictd.recording.spool import RecoveryReport, Spool

__all__ = [
    "PredictionRecord",
    "PredictionRecorder",
    "PredictionWriter",
    "RecorderState",
    "RecoveryReport",
    "Spool",
]
