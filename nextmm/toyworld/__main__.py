"""``python -m nextmm.toyworld output=data/toyworld``: the same as ``python -m nextmm.toyworld.build``."""

from nextmm import cli
from nextmm.toyworld.build import main

if __name__ == "__main__":
    cli.run("toyworld", main)
