"""Hardware abstraction: the only code that touches hardware (disks, consoles, NICs, clock).

`appliance.hal` knows whether the runtime runs inside the VM or hosted on image files;
nothing above it does.
"""
