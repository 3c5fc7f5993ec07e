"""`python -m appliance`: boot the runtime on the detected platform (VM or hosted). The
bootcode imports this module (`python3.11 -c "import appliance.__main__"`): -m would run it
through runpy, whose imports cost the cold boot ~0.1 s under TCG.

`python -m appliance died RC`: what the bootcode runs when the runtime process ended with
status RC (appliance.services.crashwatch.main: a crash dump saying so).

The platform is detected, and its clock's measurement started, before the runtime is
imported: the calibration waits about two RTC seconds, which the imports fill (under
emulation they take seconds), so the boot does not wait for it later.
"""

import gc
import sys

# The boot's imports and its services make some 30 thousand objects that live as long as
# the box, and the cyclic GC would walk them again and again while they are made (~40
# collections, a tenth of the imports' time; under TCG ~0.1 s of a cold boot). Off until
# every service is up: the runtime turns it back on then (boot.Runtime._start_late).
gc.disable()

if sys.argv[1:2] == ["died"]:
    from appliance.services.crashwatch import main as died

    sys.exit(died(sys.argv[1:]))

from appliance.hal.platform import detect_platform  # noqa: E402 - after the died path

platform = detect_platform()
platform.begin_clock()

from appliance import boot  # noqa: E402 - imported while the clock is measured

sys.exit(boot.main(platform))
