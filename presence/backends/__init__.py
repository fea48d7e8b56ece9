"""Presence backends: who is connected, in this process or across the cluster. Chosen by
`FASTCMS_PRESENCE_BACKEND` (see `presence.conf`)."""
