"""Monitoring's services orchestrate; every SQL statement, and every driver exception they
would otherwise have to catch, stays in monitoring/repository/ (STYLE.md, habits 1 and 8)."""

from __future__ import annotations

from tests.test_package_cycles import ROOT, imported_modules


def test_monitoring_services_import_no_sqlalchemy() -> None:
    services = sorted((ROOT / "monitoring").glob("*.py"))
    assert services
    offenders = {
        path.name: sorted(m for m in imported_modules(path) if m.split(".")[0] == "sqlalchemy")
        for path in services
    }
    assert {name: found for name, found in offenders.items() if found} == {}
