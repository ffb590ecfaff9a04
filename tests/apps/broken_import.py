"""An application module that fails at import time, to test startup errors."""

import this_module_does_not_exist  # noqa: F401

application = None
