"""The ``cloudfree`` command line: parsing only; every command calls one library function."""
