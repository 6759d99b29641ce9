"""Read-side analytics over the predictions table."""

from predictd.analytics.service import AnalyticsService

__all__ = ["AnalyticsService"]
