"""Jinja filters for the template (cookiecutter loads this through `_extensions`)."""

import json

from jinja2 import Environment
from jinja2.ext import Extension


def python_string(value: str) -> str:
    """A Python string literal quoted the way `ruff format` writes it.

    Double quotes unless the text holds more double than single quotes; answers with quotes
    or backslashes stay data and the rendered file stays format-clean.
    """
    quote = "'" if value.count('"') > value.count("'") else '"'
    body = value.replace("\\", "\\\\").replace(quote, "\\" + quote)
    return f"{quote}{body}{quote}"


def toml_string(value: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, minus Jinja ``tojson``'s HTML escaping.

    ``tojson`` writes an apostrophe as ``\\u0027``: valid, but not what a person typed.
    """
    return json.dumps(value, ensure_ascii=False)


class PythonStringExtension(Extension):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["python_string"] = python_string
        environment.filters["toml_string"] = toml_string
