"""`{% staff_dashboard %}`: the dashboard's panels on the admin index (admin/index.html)."""

from django import template

from console.dashboard import dashboard_for

register = template.Library()


@register.inclusion_tag("console/dashboard.html", takes_context=True)
def staff_dashboard(context) -> dict:
    """The panels the signed-in staff member may see; the admin index is staff-only already."""
    return {"console": dashboard_for(context["request"].user)}
