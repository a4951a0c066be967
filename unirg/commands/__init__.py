"""Subcommands of the `unirg` command line; each module registers one."""
