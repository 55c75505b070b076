"""The network file: loading, validation and the frozen :class:`~controller.config.model.Model`.

Only the standard library and PyYAML are imported here, so Mininet's
Python (Debian's ``/usr/bin/python3``) can load network files too.
"""

from controller.config.load import ConfigError, load_model, loads_model, parse_model

__all__ = ["ConfigError", "load_model", "loads_model", "parse_model"]
