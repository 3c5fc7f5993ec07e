"""Binary formats the box and the builder share, one module each: construct declarations
beside their spec notes. Leaves: they import nothing of the runtime (DESIGN: leaves stay
leaves), so firmware/ and the decoder tools use them without pulling in the services."""
