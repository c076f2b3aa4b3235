"""The `mandala` command line: `mandala dev` and `mandala token`."""
