"""`python -m appliance`: boot the runtime on the detected platform (VM or hosted).

`python -m appliance died RC`: what the bootcode runs when the runtime process ended with
status RC (appliance.services.crashwatch.main: a crash dump saying so).
"""

import sys

if sys.argv[1:2] == ["died"]:
    from appliance.services.crashwatch import main as died

    sys.exit(died(sys.argv[1:]))

from appliance import boot  # noqa: E402 - the died path must not boot anything

sys.exit(boot.main())
