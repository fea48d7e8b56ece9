from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("fastcms.api")),
]

handler404 = "fastcms.errors.json_or_html_404"
handler500 = "fastcms.errors.json_or_html_500"
