"""`sqlite_utils`, imported without pandas: the daemon, the CLI's store reads and every worker start faster.

sqlite-utils imports pandas (when installed) only to map `pandas.Timestamp` to a TEXT column. The store never
writes pandas values, but pandas (with pyarrow) is installed here for `datasets`, and importing it made up about
half of `python -m daemon.server`'s start-up (measured with `python -X importtime`). While sqlite-utils loads,
`import pandas` raises ImportError (a `None` entry in `sys.modules`); afterwards pandas imports normally. If
pandas is already loaded (a training worker that imported `datasets` first), nothing changes.
"""

from __future__ import annotations

import sys

_hide_pandas = "pandas" not in sys.modules
if _hide_pandas:
    sys.modules["pandas"] = None  # type: ignore[assignment]  # documented: makes `import pandas` fail
try:
    import sqlite_utils as sqlite_utils
finally:
    if _hide_pandas and "pandas" in sys.modules and sys.modules["pandas"] is None:
        del sys.modules["pandas"]

__all__ = ["sqlite_utils"]
