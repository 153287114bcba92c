"""The reports' HTML pages: Jinja2 templates (``templates/``) that escape every value they are given.

File names and table cells are attacker-controlled, so escaping is the default, never a call to
remember: the environment autoescapes every template, and a value that is deliberately HTML (a
chart's SVG) is wrapped in :class:`markupsafe.Markup` where it is made, with a comment saying why.
Every page extends ``base.html.j2``: the head, the style sheet, and a Content-Security-Policy that
allows inline styles and images from the report itself (data URIs or files beside it) and nothing
else: no script, no network.

Pages are streamed: :func:`stream` writes a template to a file chunk by chunk, so rows handed to it
as an iterator are drawn one at a time and a page is never held in memory whole.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import IO, Any

from jinja2 import Environment, PackageLoader, StrictUndefined

ENV = Environment(loader=PackageLoader("muflow_cli.outputs", "templates"), autoescape=True, undefined=StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def now() -> str:
    """When a report is written, for its header (UTC, to the second)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def render(template: str, **context: Any) -> str:
    """A small page (the fit report, the eval index) as one string."""
    return ENV.get_template(template).render(**context)


def stream(fh: IO[str], template: str, **context: Any) -> None:
    """Write a page to ``fh`` as it is rendered (the scan and video reports' pages)."""
    ENV.get_template(template).stream(**context).dump(fh)
