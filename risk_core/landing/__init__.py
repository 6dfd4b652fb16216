"""The landing zone of CONTRACT.md section 1: schemas, reader and generator."""
