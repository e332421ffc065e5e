"""LiteRT runtime: interpreter tools, inference, op profiles, the on-device benchmark."""
