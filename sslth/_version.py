"""The one version of sslth: read by pyproject.toml (``dynamic = ["version"]``, statically,
without importing the package), by ``sslth.__version__``, by reports and by run folder names
(:func:`sslth.config.run_key`)."""

__version__ = "0.2.0"
