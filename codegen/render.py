"""The single Jinja2 environment of the generator and the C text of a lowered graph."""

from __future__ import annotations

from typing import Any

import jinja2

from codegen.ctext import initializer

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("codegen", "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)
ENV.filters["initializer"] = initializer


def render(template: str, **context: Any) -> str:
    """Render ``codegen/templates/<template>`` with ``context`` (undefined names raise)."""
    return ENV.get_template(template).render(**context)
