"""The in-memory source (``[source] kind = "memory"``): captured inside the app, see ``source``."""
