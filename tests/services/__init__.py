"""Test machinery: real services the tests start on free ports (not part of the installed product)."""
