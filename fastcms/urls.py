from django.contrib import admin
from django.urls import include, path

from fastcms.views import console, favicon

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("fastcms.api")),
    path("favicon.ico", favicon, name="favicon"),
    path("", console, name="console"),
]

handler400 = "fastcms.errors.json_or_html_400"
handler403 = "fastcms.errors.json_or_html_403"
handler404 = "fastcms.errors.json_or_html_404"
handler500 = "fastcms.errors.json_or_html_500"
