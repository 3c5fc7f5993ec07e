"""The ipva firmware runtime: the hard-box's personality.

Runs inside the guest (booted from our images) and hosted on the host against disk-image
files. Imports nothing from the build side (firmware, images, hypervisors, tools).
"""
