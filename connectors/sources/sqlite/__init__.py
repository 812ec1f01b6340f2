"""SqliteSaver's file as a change source: our own changelog (triggers), snapshot, streaming."""
