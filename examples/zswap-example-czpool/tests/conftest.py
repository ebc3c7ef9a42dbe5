import sys

import pytest

# Detailed assertion messages from the kit's helper modules. This must run before they
# are imported; the check only matters when another suite has imported the kit already
# (running this folder together with the zswap-core repository's tests).
if "zswap_core.testing" not in sys.modules:
    pytest.register_assert_rewrite("zswap_core.testing")
