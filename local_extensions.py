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


# TOML's short escapes; any other control character must be written as \uXXXX.
TOML_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_char(char: str) -> str:
    if char in TOML_ESCAPES:
        return TOML_ESCAPES[char]
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04X}"
    return char


def toml_string(value: str) -> str:
    """A TOML basic string holding the text as typed.

    Jinja's ``tojson`` is valid TOML too, but writes an apostrophe as ``\\u0027`` and every
    accent as an escape; here only what TOML requires is escaped.
    """
    return '"' + "".join(toml_char(char) for char in value) + '"'


class PythonStringExtension(Extension):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["python_string"] = python_string
        environment.filters["toml_string"] = toml_string
