"""``python -m ensign``: run the ``ensign`` command."""

from ensign.cli.main import main

if __name__ == "__main__":
    main()
