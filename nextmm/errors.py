"""Errors that reach a user: the CLI prints their message as one line and exits with code 2."""


class UserError(Exception):
    """A problem with what the user gave (a path, a config name, an input file). Message = one line."""


class MediaError(UserError):
    """An input media file is missing, unreadable, corrupt or of an unsupported type."""


class ConfigError(UserError):
    """An unknown config name, a bad override or a missing checkpoint."""


class Stopped(Exception):
    """Work ended early because its caller set its ``stop`` event (a turn whose client gave up)."""
