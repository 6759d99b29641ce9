"""All SQL of monitoring, one repository per thing it stores; services orchestrate over them.

Each repository works on the connection (and so the transaction) its service opened inside
``db.errors.translate_errors``; a driver error a service must decide on (another replica
opened the same alert) is answered here, as a value, so no service sees a driver exception.
"""

from predictd.monitoring.repository.alerts import AlertRepository
from predictd.monitoring.repository.drift import DriftRepository, Feature
from predictd.monitoring.repository.feedback import FeedbackRepository
from predictd.monitoring.repository.monitor import MonitorRepository, Served
from predictd.monitoring.repository.performance import PerformanceRepository
from predictd.monitoring.repository.series import SeriesRepository
from predictd.monitoring.repository.system import SystemMetricsRepository

__all__ = [
    "AlertRepository",
    "DriftRepository",
    "Feature",
    "FeedbackRepository",
    "MonitorRepository",
    "PerformanceRepository",
    "SeriesRepository",
    "Served",
    "SystemMetricsRepository",
]
