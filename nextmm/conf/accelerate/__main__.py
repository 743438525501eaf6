"""The path of a shipped accelerate config, for `accelerate launch --config_file`:

    accelerate launch --config_file $(python -m nextmm.conf.accelerate fsdp) -m nextmm train ...

Names: the .yaml files beside this one (fsdp, deepspeed_zero2_offload).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    names = sorted(path.stem for path in HERE.glob("*.yaml"))
    if len(argv) != 1 or argv[0] not in names:
        sys.stderr.write(f"usage: python -m nextmm.conf.accelerate NAME; NAME is one of: {', '.join(names)}\n")
        return 2
    print(HERE / f"{argv[0]}.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
