"""``python -m nextmm <command> [key=value ...]``: the same as the ``nextmm`` console script."""

from nextmm.cli.commands import main

if __name__ == "__main__":
    main()
