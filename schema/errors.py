"""The one type that says "the user's input is wrong": the CLI exits 2 for it and 1 otherwise.

A plain ValueError may come from a bug in our code or deep inside TensorFlow; reporting it as
the user's mistake would send them looking for a fault in their data that is not there. So a
check that rejects what the user or their data gave raises BadInput (or a subclass), and only
that reaches the console as "bad input". It lives in `schema/`, the lowest package, so every
package can raise it without importing upwards.
"""

from __future__ import annotations


class BadInput(ValueError):
    """The user's arguments, files or data are wrong; the message says what and how to fix it.

    A ValueError subclass so callers and tests that catch ValueError keep working.
    """


class MissingInput(BadInput, FileNotFoundError):
    """A file or folder the user named (or a command needs from an earlier one) is not there.

    Also a FileNotFoundError, for callers that catch that.
    """
