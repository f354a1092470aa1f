"""`{% load tethys_gizmos %}` as in a Tethys template: the same `{% gizmo %}` tag as `{% load jobtower %}`."""

from django import template

from jobtower.templatetags.jobtower import gizmo

register = template.Library()
register.simple_tag(gizmo, takes_context=True, name="gizmo")


@register.simple_tag
def gizmo_dependencies(*args: object) -> str:
    """Accept Tethys's `{% gizmo_dependencies css %}`: the Jobs Table brings its own CSS and script."""
    return ""


@register.simple_tag
def import_gizmo_dependency(*args: object) -> str:
    """Accept Tethys's `{% import_gizmo_dependency name %}`: nothing to import (see gizmo_dependencies)."""
    return ""
