"""`python -m appliance`: boot the runtime on the detected platform (VM or hosted)."""

import sys

from appliance import boot

sys.exit(boot.main())
