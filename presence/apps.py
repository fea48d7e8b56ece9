from django.apps import AppConfig


class PresenceConfig(AppConfig):
    name = "presence"
    verbose_name = "Presence"

    def ready(self) -> None:
        from presence import tracker
        from realtime import views

        views.stream_opened.connect(tracker.stream_opened, dispatch_uid="presence.stream_opened")
        views.stream_closed.connect(tracker.stream_closed, dispatch_uid="presence.stream_closed")
