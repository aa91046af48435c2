"""The one path from a file and a target to a written result; the rules decided once."""
