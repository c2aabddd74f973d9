"""Dataset annotations, class maps and records shared by every stage."""
