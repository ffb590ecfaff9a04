"""A one-file Django project served through the gateway in the tests."""

import json

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="tests-only-not-secret",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    INSTALLED_APPS=[],
    DATABASES={},
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


def meta(request):
    return JsonResponse({
        "method": request.method,
        "path": request.path,
        "query": request.GET.dict(),
        "remote": request.META.get("REMOTE_ADDR"),
        "host": request.get_host(),
        "scheme": request.scheme,
    })


@csrf_exempt
def form(request):
    return JsonResponse({"fields": request.POST.dict(), "body_len": len(request.body)})


def text(request):
    return HttpResponse("hello from django", content_type="text/plain")


def raw(request):
    return HttpResponse(json.dumps({"ok": True}), content_type="application/json")


urlpatterns = [
    path("meta/", meta),
    path("form/", form),
    path("text/", text),
    path("raw/", raw),
]

application = get_wsgi_application()
