"""Acquisition: models and text from their sources into resources/, in one fixed shape."""
