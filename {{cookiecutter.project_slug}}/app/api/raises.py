"""Which errors each route can answer, read from the code itself, for the OpenAPI schema.

Hand-written `responses=` lists go stale, so every route documented the same seven statuses
whatever it could return. Instead this follows, in the source, what a route runs: its
dependencies, its endpoint, the service methods those call (through parameters, `self`,
attributes set in `__init__`, module functions) and the `raise` statements they reach. Each
`ServiceError` found documents its status and its `code`. The reading over-approximates (an
error caught again by the caller still counts), so the schema may promise an error that never
comes, but never misses one that can: schemathesis checks that against the running service.
"""

import ast
import inspect
import textwrap
import types
from collections.abc import Callable, Iterator
from functools import cache
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.core.rate_limit import RateLimitExceeded
from app.services.errors import ServiceError

# Exceptions that are not ServiceErrors but are answered with a status of their own.
OTHER_STATUSES: dict[type[Exception], tuple[int, str]] = {RateLimitExceeded: (429, "rate_limited")}
# Only the project's own code is read; libraries raise nothing a client is told about.
OWN_PACKAGE = "app."


def route_errors(route: APIRoute) -> dict[int, set[str]]:
    """Status code -> the `code`s the route can answer with it."""
    found: dict[int, set[str]] = {}
    for error in _route_exceptions(route):
        status, code = _status_of(error)
        found.setdefault(status, set()).add(code)
    return found


def _route_exceptions(route: APIRoute) -> set[type[Exception]]:
    errors: set[type[Exception]] = set()
    for call in (*_dependency_calls(route.dependant), route.endpoint):
        errors |= _raised_by(_function_of(call))
    return errors


def _dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _dependency_calls(dependency)


def _function_of(call: Callable[..., Any]) -> Callable[..., Any]:
    """A dependency may be an instance with `__call__` (a security scheme)."""
    if inspect.isfunction(call) or inspect.ismethod(call):
        return call
    method: Callable[..., Any] = type(call).__call__
    return method


def _status_of(error: type[Exception]) -> tuple[int, str]:
    if issubclass(error, ServiceError):
        return error.status_code, error.code
    return OTHER_STATUSES[error]


def _is_answered(value: object) -> bool:
    return isinstance(value, type) and (issubclass(value, ServiceError) or value in OTHER_STATUSES)


_FOUND: dict[Callable[..., Any], frozenset[type[Exception]]] = {}


def _raised_by(
    function: Callable[..., Any], owner: type | None = None
) -> frozenset[type[Exception]]:
    """What `function` (a method of `owner`, if given) and everything it calls can raise.
    Each function is read once; a call back into one being read adds nothing new."""
    function = inspect.unwrap(function)
    if function in _FOUND:
        return _FOUND[function]
    _FOUND[function] = frozenset()  # in progress: breaks recursion cycles
    module = inspect.getmodule(function)
    if module is None or not module.__name__.startswith(OWN_PACKAGE):
        return frozenset()
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return frozenset()
    scope = _Scope(function, owner, vars(module))
    errors: set[type[Exception]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            value = scope.resolve(target)
            if _is_answered(value):
                errors.add(value)  # type: ignore[arg-type]
        elif isinstance(node, ast.Call):
            for callee, callee_owner in scope.callees(node.func):
                errors |= _raised_by(callee, callee_owner)
    _FOUND[function] = frozenset(errors)
    return _FOUND[function]


class _Scope:
    """Names as the function sees them: its module's globals, its annotated parameters, and
    `self` with the attributes its class sets in `__init__`."""

    def __init__(
        self, function: Callable[..., Any], owner: type | None, globals_: dict[str, Any]
    ) -> None:
        self.globals = globals_
        self.owner = owner or _owner_of(function, globals_)
        self.parameters = _parameter_types(function, globals_)

    def resolve(self, node: ast.expr) -> object:
        """The object an expression names, when it can be known without running the code."""
        if isinstance(node, ast.Name):
            if node.id == "self":
                return self.owner
            if node.id in self.parameters:
                return self.parameters[node.id]
            return self.globals.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            if base is None:
                return None
            if isinstance(base, types.ModuleType):
                return getattr(base, node.attr, None)
            if isinstance(base, type):
                attribute = inspect.getattr_static(base, node.attr, None)
                if isinstance(attribute, staticmethod | classmethod) or inspect.isfunction(
                    attribute
                ):
                    return base, attribute
                return _attribute_types(base).get(node.attr)
            if isinstance(base, tuple):  # (class, member): attributes of a member are unknown
                return None
        if isinstance(node, ast.Await):
            return self.resolve(node.value)
        return None

    def callees(self, node: ast.expr) -> Iterator[tuple[Callable[..., Any], type | None]]:
        value = self.resolve(node)
        if isinstance(value, tuple):
            owner, member = value
            member = getattr(member, "__func__", member)
            if inspect.isfunction(member):
                yield member, owner
        elif inspect.isfunction(value):
            yield value, None
        elif isinstance(value, type) and value.__module__.startswith(OWN_PACKAGE):
            init = value.__dict__.get("__init__")
            if inspect.isfunction(init):
                yield init, value


def _owner_of(function: Callable[..., Any], globals_: dict[str, Any]) -> type | None:
    owner_name = function.__qualname__.rpartition(".")[0]
    owner = globals_.get(owner_name) if owner_name and "<" not in owner_name else None
    return owner if isinstance(owner, type) else None


def _parameter_types(function: Callable[..., Any], globals_: dict[str, Any]) -> dict[str, type]:
    try:
        hints = get_type_hints(function, globalns=globals_, include_extras=True)
    except Exception:
        return {}
    return {name: kind for name, hint in hints.items() if (kind := _class_of(hint)) is not None}


def _class_of(hint: object) -> type | None:
    if get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    return hint if isinstance(hint, type) else None


@cache
def _attribute_types(owner: type) -> dict[str, object]:
    """`self.x` of a class: its annotations, and `self.x = Class(...)` or `self.x = param`
    in `__init__`."""
    found: dict[str, object] = {}
    module = inspect.getmodule(owner)
    globals_ = vars(module) if module else {}
    for klass in reversed(owner.__mro__):
        try:
            hints = get_type_hints(klass, globalns=globals_)
        except Exception:
            hints = {}
        found.update({name: kind for name, hint in hints.items() if (kind := _class_of(hint))})
    init = owner.__dict__.get("__init__")
    if not inspect.isfunction(init) or not module or not module.__name__.startswith(OWN_PACKAGE):
        return found
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
    except (OSError, TypeError, SyntaxError):  # generated (a dataclass): annotations only
        return found
    parameters = _parameter_types(init, globals_)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)):
            continue
        if target.value.id != "self":
            continue
        value = node.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            found[target.attr] = globals_.get(value.func.id)
        elif isinstance(value, ast.Name) and value.id in parameters:
            found[target.attr] = parameters[value.id]
    return found
