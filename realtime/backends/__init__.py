"""Event backends: what gives events their ids, keeps the replay history and carries events to
every process's bus. Chosen by `FASTCMS_EVENT_BACKEND` (see `realtime.conf`)."""
