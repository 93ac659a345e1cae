"""One module per screen: each has ``layout`` (rendered from the live state) and ``register``."""
