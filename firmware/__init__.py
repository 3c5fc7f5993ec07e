"""Build side, lowest layer: the bootcode, the firmware image ipva.bin, and host-tool calls."""
