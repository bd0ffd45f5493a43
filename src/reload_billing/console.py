"""The ``reload`` command.

With the server installed (``reload-billing[server]``) it has every command: the
operator's and the developer's. With only ``reload-billing[client]`` it has the
developer's (``reload usage ...``, ``reload preview-charge``) and says what to
install for the others.
"""

from __future__ import annotations


def main() -> None:
    try:
        from .cli import main as every_command
    except ImportError as missing:
        from .client.cli import main as developer_commands

        developer_commands(missing=missing.name or "a server package")
        return
    every_command()
