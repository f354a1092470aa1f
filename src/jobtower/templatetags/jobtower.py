"""Template tags: `{% load jobtower %}{% jobs_table jobs_table_options %}`, or Tethys's `{% gizmo options %}`."""

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


@register.simple_tag(takes_context=True)
def gizmo(context: Any, *args: Any) -> SafeString:
    """Render gizmo options as Tethys's tag does: `{% gizmo options %}` (or the older `{% gizmo name options %}`)."""
    if not 1 <= len(args) <= 2:
        raise template.TemplateSyntaxError("use {% gizmo options %} with the options the view put in the context")
    options = args[-1]
    if not hasattr(options, "render"):
        raise template.TemplateSyntaxError(
            f"{{% gizmo %}} renders jobtower's JobsTable only; got {type(options).__name__} (is the name "
            "in the context?)"
        )
    return jobs_table(context, options)
