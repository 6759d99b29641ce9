"""The HTTP layer: thin routes, dependencies, middleware and error rendering."""

from predictd.api.deps import Services
from predictd.api.errors import install_error_handlers
from predictd.api.middleware import ServingMiddleware
from predictd.api.routes import (
    alerts,
    analytics,
    dashboard,
    drift,
    feedback,
    health,
    metrics,
    models,
    predict,
    v2,
)

ROUTERS = (
    predict.router,
    feedback.router,
    alerts.router,
    drift.router,
    dashboard.router,
    health.router,
    analytics.router,
    models.router,
    metrics.router,
    v2.router,
)

__all__ = ["ROUTERS", "Services", "ServingMiddleware", "install_error_handlers"]
