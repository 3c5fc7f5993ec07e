"""Firmware update: two slots on the boot disk and the record that picks one (bootctl)."""
