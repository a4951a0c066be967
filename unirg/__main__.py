"""Entry point for `python -m unirg`."""

from unirg.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
