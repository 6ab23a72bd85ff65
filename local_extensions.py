"""Jinja filters for the template (cookiecutter loads this through `_extensions`)."""

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


class PythonStringExtension(Extension):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["python_string"] = python_string
