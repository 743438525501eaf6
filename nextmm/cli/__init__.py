"""Running a nextmm command: every command is a Hydra application.

``cli.run`` hands the command line to ``hydra.main``, so Hydra's own flags work on every command:
``--cfg job|hydra|all``, ``--info``, ``--hydra-help``, ``--shell-completion``, ``-m`` sweeps and launcher
plugins (``hydra/launcher=slurm``). Before Hydra sees them, the overrides are composed once with Hydra's compose
API, so that a user error (an unknown key, a bad value, an unknown model) is one line on stderr with exit code 2
rather than Hydra's report. ``compose_config`` is the same composition for the Python API, notebooks and tests.

    app.py        run: Hydra's main, run folders, one-line errors, Ctrl-C and a full disk
    overrides.py  compose_config, and the overrides taken apart and checked before Hydra sees them
    commands.py   nextmm <command>: every command and training recipe by name
    generate.py, chat.py, inspect.py   commands of their own
"""

from nextmm.cli.app import USAGE_ERROR, quiet_libraries, run
from nextmm.cli.overrides import compose_config

__all__ = ["USAGE_ERROR", "compose_config", "quiet_libraries", "run"]
