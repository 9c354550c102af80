"""The package version, in a module of its own: every layer can record it without importing the package's API."""

__version__ = "0.1.0"
