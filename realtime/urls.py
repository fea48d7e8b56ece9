from django.urls import path, re_path

from realtime import views

urlpatterns = [
    re_path(r"^realtime/?$", views.stream_all, name="realtime"),
    path("realtime/<str:name>", views.stream_collection, name="realtime-collection"),
    path("realtime/<str:name>/", views.stream_collection),
]
