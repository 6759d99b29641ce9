"""The HTTP layer: thin routes, dependencies, middleware and error rendering."""

from predictd.api.deps import Services
from predictd.api.dispatch import Dispatcher
from predictd.api.endpoints import merge
from predictd.api.errors import install_error_handlers
from predictd.api.middleware import ServingMiddleware
from predictd.api.routes import (
    actions,
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
    whoami,
)

ROUTERS = (
    predict.router,
    feedback.router,
    alerts.router,
    actions.router,
    whoami.router,
    drift.router,
    dashboard.router,
    health.router,
    analytics.router,
    models.router,
    metrics.router,
    v2.router,
    v2.INFER_ENDPOINTS.router,
)
# The hot endpoints the dispatcher answers without FastAPI's per-request machinery.
FAST_TABLE = merge(predict.ENDPOINTS, v2.INFER_ENDPOINTS)

__all__ = [
    "FAST_TABLE",
    "ROUTERS",
    "Dispatcher",
    "Services",
    "ServingMiddleware",
    "install_error_handlers",
]
