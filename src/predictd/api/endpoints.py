"""Hot endpoints, each declared once: path template, scope, handler and OpenAPI extras.

The prediction endpoints are the hot path. Routing, dependency solving and response
validation cost more than everything else a prediction does once micro-batching has made the
model cheap (773 -> 1,834 req/s at 32 connections when the fast path was added), so the
``Dispatcher`` (api/dispatch.py) answers them from a table without FastAPI's per-request
machinery. From one ``Endpoint`` this module makes both the FastAPI route (/openapi.json, the
every-route-declares-a-scope test, and the path taken when the table is switched off) and the
table's entry (the same template compiled by Starlette's ``compile_path``), and both run the
same admission, the same path-parameter validation and the same handler.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from re import Pattern
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response
from starlette.routing import compile_path

from predictd.access.keys import Principal
from predictd.access.scopes import Scope
from predictd.api.auth import Needs
from predictd.api.deps import Services, context_of
from predictd.api.responses import JSONResponse
from predictd.inference.values import RequestContext


@dataclass(frozen=True, slots=True)
class Call:
    """One admitted request to a hot endpoint, as its handler sees it."""

    request: Request
    services: Services
    ctx: RequestContext
    body: bytes
    params: Mapping[str, Any]  # the path parameters, validated


Handler = Callable[[Call], Awaitable[Response | dict[str, Any]]]


@dataclass(frozen=True)
class Endpoint:
    """``name`` is the operation's name (its operationId and summary derive from it, as from
    a handler function's name); ``doc`` its description; ``types`` the annotations of path
    parameters that are not plain strings; ``openapi`` the keyword arguments FastAPI's
    ``add_api_route`` takes for the document (response_model, responses, ...)."""

    path: str
    scope: Scope
    handler: Handler
    name: str
    doc: str
    types: Mapping[str, Any] = field(default_factory=dict)
    openapi: Mapping[str, Any] = field(default_factory=dict)
    method: str = "POST"

    def annotations(self, names: Sequence[str]) -> dict[str, Any]:
        unknown = set(self.types) - set(names)
        if unknown:
            raise ValueError(f"{self.path} has no path parameters {sorted(unknown)}")
        return {name: self.types.get(name, str) for name in names}


class Params:
    """Validates a hot template's path parameters exactly as FastAPI validates the declared
    route's (same types, same errors), so both paths answer a bad version alike."""

    def __init__(self, annotations: Mapping[str, Any]) -> None:
        self.names = tuple(annotations)
        # A plain ``str`` parameter is the matched text as it is: nothing to run per request.
        self.adapters = {
            name: TypeAdapter(kind) for name, kind in annotations.items() if kind is not str
        }

    def validate(self, raw: Mapping[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = dict(raw)
        for name, adapter in self.adapters.items():
            try:
                values[name] = adapter.validate_python(raw[name])
            except ValidationError as exc:
                errors = exc.errors(include_url=False)
                raise RequestValidationError(
                    [{**e, "loc": ("path", name, *e["loc"])} for e in errors]
                ) from None
        return values


@dataclass(frozen=True, slots=True)
class Hot:
    """One entry of the fast table."""

    endpoint: Endpoint
    route: APIRoute  # the declared route: metrics label requests by its path
    needs: Needs
    regex: Pattern[str]
    params: Params


class FastTable:
    """Matches a request to a hot endpoint: fixed paths by lookup, templates by the regex
    ``compile_path`` makes of them (the one Starlette's router matches with)."""

    def __init__(self, entries: Sequence[Hot]) -> None:
        self.entries = tuple(entries)
        self._fixed = {
            (e.endpoint.method, e.endpoint.path): e for e in entries if not e.params.names
        }
        self._templates = [e for e in entries if e.params.names]

    def match(self, method: str, path: str) -> tuple[Hot, dict[str, str]] | None:
        fixed = self._fixed.get((method, path))
        if fixed is not None:
            return fixed, {}
        for entry in self._templates:
            if entry.endpoint.method == method and (found := entry.regex.match(path)):
                return entry, found.groupdict()
        return None


def render(result: Response | dict[str, Any]) -> Response:
    return result if isinstance(result, Response) else JSONResponse(result)


def _declared(
    endpoint: Endpoint, needs: Needs, annotations: Mapping[str, Any]
) -> Callable[..., Any]:
    """The FastAPI endpoint function: a signature FastAPI reads the path parameters and the
    scope from, and a body that calls the handler as the fast table does."""

    async def route(request: Request, **values: Any) -> Response:
        values.pop("_principal")
        services: Services = request.app.state.services
        call = Call(request, services, context_of(request), await request.body(), values)
        return render(await endpoint.handler(call))

    keyword = inspect.Parameter.KEYWORD_ONLY
    route.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
            ),
            *(inspect.Parameter(n, keyword, annotation=t) for n, t in annotations.items()),
            inspect.Parameter(
                "_principal", keyword, annotation=Annotated[Principal, Depends(needs)]
            ),
        ]
    )
    route.__name__ = route.__qualname__ = endpoint.name
    route.__doc__ = endpoint.doc
    return route


@dataclass(frozen=True)
class HotRoutes:
    """What ``declare`` makes of a set of endpoints: the router to include in the app and
    the fast table the dispatcher answers from."""

    router: APIRouter
    table: FastTable


def declare(endpoints: Sequence[Endpoint], *, tags: list[str]) -> HotRoutes:
    router = APIRouter(tags=list(tags))
    entries = []
    for endpoint in endpoints:
        regex, _format, convertors = compile_path(endpoint.path)
        needs = Needs(endpoint.scope)
        annotations = endpoint.annotations(list(convertors))
        router.add_api_route(
            endpoint.path,
            _declared(endpoint, needs, annotations),
            methods=[endpoint.method],
            **endpoint.openapi,
        )
        route = router.routes[-1]
        assert isinstance(route, APIRoute)
        entries.append(Hot(endpoint, route, needs, regex, Params(annotations)))
    return HotRoutes(router, FastTable(entries))


def merge(*groups: HotRoutes) -> FastTable:
    return FastTable([entry for group in groups for entry in group.table.entries])
