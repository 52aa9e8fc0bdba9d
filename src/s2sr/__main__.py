"""``python -m s2sr``: the command line, for environments without the ``s2sr`` script."""

from s2sr.cli.main import main

if __name__ == "__main__":
    main()
