"""The `mulsen` subcommands, one module per role; they wire devices, files and the Python API together."""
