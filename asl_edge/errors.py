"""The one rule from a failure to an exit code: a ``UserError`` (bad input, a missing file, an
unusable device or setting) is printed by the command line as one line naming the problem, with
exit code 2; anything else is a bug and keeps its traceback."""


class UserError(Exception):
    """A problem with what the user gave or has (input, settings, machine), not a bug."""


class CommandError(UserError, RuntimeError):
    """A command's own check failed, or a stage's error re-raised with the command's wording."""
