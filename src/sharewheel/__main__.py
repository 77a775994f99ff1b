"""`python -m sharewheel`.

`-m` puts the current directory first on sys.path, so a checkout or download being repaired or
audited could otherwise supply modules (a `click.py`) and distributions (a `*.dist-info` whose
entry points name plugins, or an installed provider) to every command run in it. The entry is
kept, so that it stays the one "Python put first" (``sharewheel.plugin.own_path`` and `check`
leave sys.path[0] out), but as this file, from which nothing can be imported or read as a
distribution. `python -P` / PYTHONSAFEPATH put nothing there.
"""

import sys

if not getattr(sys.flags, "safe_path", False) and sys.path:
    sys.path[0] = __file__

from sharewheel.cli import main  # (after sys.path is safe)

main()
