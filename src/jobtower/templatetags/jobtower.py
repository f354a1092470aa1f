"""Template tags: `{% load jobtower %}{% jobs_table jobs_table_options %}`."""

from typing import TYPE_CHECKING, Any

from django import template
from django.utils.safestring import SafeString

if TYPE_CHECKING:
    from jobtower.gizmos import JobsTable

register = template.Library()


@register.simple_tag(takes_context=True)
def jobs_table(context: Any, options: "JobsTable") -> SafeString:
    """Render a JobsTable for the current request."""
    request = context.get("request")
    if request is None:
        raise template.TemplateSyntaxError(
            "{% jobs_table %} needs the request in the context: enable "
            "'django.template.context_processors.request'"
        )
    return options.render(request)
