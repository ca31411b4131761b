"""Importers turn third-party formats into a recsys dataset directory."""
