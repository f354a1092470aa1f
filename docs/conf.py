"""Sphinx configuration of the jobtower documentation.

Build with::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

autodoc imports jobtower's models, so Django is configured here with the standalone site's settings.
Those settings create a home folder (a generated secret key lives there): it is a throw-away temporary
folder, so building the documentation never writes into the repository.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive

DOCS = Path(__file__).resolve().parent
SRC = DOCS.parent / "src"
if SRC.is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

# -- Django ---------------------------------------------------------------------------------------

_HOME = tempfile.mkdtemp(prefix="jobtower-docs-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ["JOBTOWER_HOME"] = _HOME
os.environ["DJANGO_SETTINGS_MODULE"] = "jobtower.site.settings"
# The docs never touch a database; do not let a PostgreSQL URL from the environment load a driver.
os.environ.pop("JOBTOWER_DATABASE_URL", None)

import django  # noqa: E402

django.setup()

import jobtower  # noqa: E402
from jobtower import statuses  # noqa: E402

# -- Project --------------------------------------------------------------------------------------

project = "jobtower"
author = "the jobtower authors"
copyright = "the jobtower authors"
version = release = jobtower.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
nitpicky = False
default_role = "literal"  # docstrings write code names in single backticks
pygments_style = "sphinx"

# -- autodoc --------------------------------------------------------------------------------------

# The docstrings are one-line prose; types go into the description, and only the return type is
# added (listing "*args (Any)" under every Django model would be noise).
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"

# -- HTML -----------------------------------------------------------------------------------------

html_theme = "alabaster"
html_title = f"jobtower {release}"
html_theme_options = {
    "description": "The Jobs API for scientific web apps, on Django",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}


# -- The transition table, rendered from jobtower.statuses so it never drifts from the code --------


class StatusTransitions(Directive):
    """``.. jobtower-transitions::``: a table of statuses.TRANSITIONS, one row per current status."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        rows = []
        for current in statuses.Status:
            targets = [s for s in statuses.Status if s in statuses.TRANSITIONS[current]]
            moves = ", ".join(s.display for s in targets) or "nothing (final; only resubmit() leaves it)"
            rows.append((f"{current.display} ({current.value})", moves))
        return [_table(["From", "May move to"], rows, widths=[25, 75])]


def _table(header: list[str], rows: list[tuple[str, ...]], widths: list[int]) -> nodes.table:
    table = nodes.table(classes=["jobtower-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    thead = nodes.thead()
    group += thead
    thead += _row(header)
    tbody = nodes.tbody()
    group += tbody
    for row in rows:
        tbody += _row(row)
    return table


def _row(cells: tuple[str, ...] | list[str]) -> nodes.row:
    row = nodes.row()
    for text in cells:
        entry = nodes.entry()
        entry += nodes.paragraph(text=text)
        row += entry
    return row


def setup(app):  # noqa: ANN001, ANN201
    app.add_directive("jobtower-transitions", StatusTransitions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
