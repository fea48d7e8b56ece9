from django.urls import re_path

from presence import views

urlpatterns = [re_path(r"^presence/?$", views.presence, name="presence")]
