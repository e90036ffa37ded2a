"""``python -m creg`` (what torchrun launches) is the ``creg`` command."""

from creg.cli import main

if __name__ == "__main__":
    main()
