"""The virtual world (parts with planted defects) and protocol-level simulators of every device."""
