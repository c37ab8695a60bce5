"""Shared test helpers: the tiny model's settings (``models``); more fixtures and fakes move here as they are shared."""
