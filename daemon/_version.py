"""The version, in one place (read by the CLI, the admin API and packaging)."""

__version__ = "0.1.0"
