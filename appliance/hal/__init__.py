"""Hardware abstraction: the only code that touches hardware (disks, consoles, NICs, clock).

types.py: the shared leaf types; platform.py: the Platform interface and detect_platform();
vm.py and hosted.py: its two implementations.

`appliance.hal` knows whether the runtime runs inside the VM or hosted on image files;
nothing above it does.
"""
