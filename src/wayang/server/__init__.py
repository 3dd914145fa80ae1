"""``wayang server``: the daemon, its HTTP API (``/api/v1``) and the Workbench."""
