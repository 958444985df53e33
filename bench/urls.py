"""The project's URLs plus one bare view, the reference that bench/webhooks.py measures against.

Used only with config.settings.bench (ROOT_URLCONF). The bare view goes through the same
middleware as every other view and does nothing else: no database, no broker, no parsing.
"""

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as project_urlpatterns


@csrf_exempt
def bare_json(request):
    return JsonResponse({"ok": True})


urlpatterns = [path("bench/bare", bare_json, name="bench-bare"), *project_urlpatterns]
