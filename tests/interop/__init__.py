"""Interop tests: independent TUF clients against the published library on a real nginx."""
