"""The one exception type for user mistakes.

Anything a user can cause (a missing file, a NaN in the data, an unknown option name) raises
:class:`UserError` with a message of one line that names the problem and the fix. The CLI
prints that line and exits with status 2; it never shows a traceback for these.
"""


class UserError(ValueError):
    """A mistake in the user's input: the message is one line naming the problem and the fix."""
