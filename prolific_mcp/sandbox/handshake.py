"""What the sandbox command and the process that starts it agree on: the ready line and the token variables.

Kept apart from `server.py` so that starting the child (`process.py`) does not import the whole emulator.
"""

from __future__ import annotations

import re
from typing import Final

TOKEN_ENV: Final = "PROLIFIC_SANDBOX_TOKEN"  # noqa: S105 (the variable's name, not a secret)
ADMIN_TOKEN_ENV: Final = "PROLIFIC_SANDBOX_ADMIN_TOKEN"  # noqa: S105 (the variable's name, not a secret)
READY_PREFIX: Final = "Prolific sandbox ready at "
TEMP_NOTE: Final = "a fresh temporary folder, deleted on exit"
READY_LINE: Final = re.compile(
    r"^Prolific sandbox ready at (?P<url>http://\S+) \(fake S3 at (?P<s3_url>http://[^,\s]+), "
    r"state in (?P<state_dir>.+?)(?:, " + re.escape(TEMP_NOTE) + r")?; admin token (?P<admin>\S+|\(as configured\))\)$"
)
"""The ready line; `admin` is the admin token, or `(as configured)` when it was given to the sandbox."""
CONFIGURED_ADMIN: Final = "(as configured)"
